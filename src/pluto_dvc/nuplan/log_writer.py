"""Write one nuPlan log database (SQLite) from column tables, atomically.

``tables`` maps a table name to its columns: ``{"lidar_pc": {"token": [...], "timestamp": [...],
...}, ...}``. Every column of the schema must be given for each given table; tables not given are
created empty. Token columns hold 8-byte ``bytes`` (``None`` where the column is nullable) or an
``'S8'`` numpy array; other columns hold Python values or numpy arrays.

Sensor extrinsics: real logs hold ``lidar.translation`` / ``lidar.rotation`` as the pickled bytes
of a Python list of 3 floats (x, y, z m) and of 4 floats (quaternion w, x, y, z), which the devkit
unpickles (``get_lidar_to_ego_transform``). :func:`sensor_extrinsics_blobs` writes exactly that
kind of bytes; this project's readers never unpickle anything.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pluto_dvc.io import temp_file_beside
from pluto_dvc.nuplan.log_schema import SCHEMA, TOKEN_BYTES, Column, Table, create_statements
from pluto_dvc.nuplan.log_schema import index_statements as _index_statements


def pickled_float_list(values: Sequence[float]) -> bytes:
    """The bytes ``pickle.dumps(list_of_floats, protocol=2)`` writes, built without the pickle
    module (no product module imports it): PROTO 2, EMPTY_LIST, BINPUT 0, MARK, one BINFLOAT
    (big-endian double) per value, APPENDS, STOP. At least two values."""
    body = b"".join(b"G" + struct.pack(">d", float(v)) for v in values)
    return b"\x80\x02]q\x00(" + body + b"e."


def sensor_extrinsics_blobs(
    translation: Sequence[float] = (0.0, 0.0, 0.0),
    rotation: Sequence[float] = (1.0, 0.0, 0.0, 0.0),
) -> tuple[bytes, bytes]:
    """The ``lidar.translation`` and ``lidar.rotation`` BLOBs of a sensor: the pickled bytes of a
    3-list (m) and of a 4-list quaternion (w, x, y, z), as in real nuPlan logs.

    Raises ValueError unless there are 3 and 4 finite numbers and the quaternion has unit norm
    (within 1e-6).
    """
    t = [float(v) for v in translation]
    q = [float(v) for v in rotation]
    if len(t) != 3 or len(q) != 4 or not np.all(np.isfinite(t + q)):
        raise ValueError(
            f"sensor extrinsics need 3 finite translation values and 4 finite quaternion values "
            f"(w, x, y, z); got {t} and {q}"
        )
    if abs(float(np.linalg.norm(q)) - 1.0) > 1e-6:
        raise ValueError(f"sensor rotation {q} is not a unit quaternion (w, x, y, z)")
    return pickled_float_list(t), pickled_float_list(q)


def write_log_db(path: str | os.PathLike, tables: Mapping[str, Mapping[str, Sequence]]) -> None:
    """Write ``tables`` to the log DB at ``path`` (replaced atomically; parents must exist).

    Raises ValueError for an unknown table or column, a missing column, columns of unequal length
    or a malformed token. The DB is built in a temp file next to ``path`` and renamed onto it, so
    a crash never leaves a half-written ``.db``.
    """
    path = Path(path)
    rows = {name: _table_rows(name, columns) for name, columns in tables.items()}
    tmp_name = temp_file_beside(path)
    try:
        con = sqlite3.connect(tmp_name, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.execute("PRAGMA cache_size=-262144")  # 256 MiB: random-order token index inserts
            con.execute("BEGIN")
            for statement in create_statements(include_indexes=False):
                con.execute(statement)
            for name, (columns, values) in rows.items():
                placeholders = ", ".join("?" * len(columns))
                sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({placeholders})"
                try:
                    con.executemany(sql, values)
                except (sqlite3.Error, OverflowError) as exc:
                    raise ValueError(f"cannot write table {name!r}: {exc}") from exc
            for statement in _index_statements():
                con.execute(statement)
            con.execute("COMMIT")
        finally:
            con.close()
        with open(tmp_name, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _table_rows(name: str, columns: Mapping[str, Sequence]) -> tuple[list[str], zip]:
    """Check one table against the schema; return its column names and a row iterator."""
    table = SCHEMA.get(name)
    if table is None:
        raise ValueError(f"unknown nuPlan table {name!r}; known tables: {sorted(SCHEMA)}")
    missing = [c for c in table.column_names if c not in columns]
    unknown = [c for c in columns if c not in table.column_names]
    if missing or unknown:
        raise ValueError(
            f"table {name!r}: missing columns {missing}, unknown columns {unknown}; "
            f"expected exactly {list(table.column_names)}"
        )
    names = list(table.column_names)
    values = [_column_values(table, table.column(c), columns[c]) for c in names]
    lengths = {c: len(v) for c, v in zip(names, values, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table {name!r}: columns have unequal lengths {lengths}")
    return names, zip(*values, strict=True)


def _column_values(table: Table, column: Column, values: Sequence) -> list:
    """One column as a list of Python values (numpy scalars converted, tokens checked)."""
    where = f"table {table.name!r} column {column.name!r}"
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{where}: expected a 1-D array, got shape {values.shape}")
        if values.dtype.kind == "S" and column.is_token:
            if values.dtype.itemsize != TOKEN_BYTES:
                raise ValueError(f"{where}: token arrays must be 'S8', got {values.dtype}")
            raw = np.ascontiguousarray(values).tobytes()
            return [raw[i : i + TOKEN_BYTES] for i in range(0, len(raw), TOKEN_BYTES)]
        values = values.tolist()
    else:
        values = list(values)
    if column.is_token:
        _check_tokens(where, column.nullable, values)
    return values


def _check_tokens(where: str, nullable: bool, values: list) -> None:
    present = values
    if None in values:
        if not nullable:
            raise ValueError(
                f"{where}: row {values.index(None)} is None but the column is NOT NULL"
            )
        present = [v for v in values if v is not None]
    if set(map(type, present)) <= {bytes} and set(map(len, present)) <= {TOKEN_BYTES}:
        return
    i, v = next(
        (i, v)
        for i, v in enumerate(values)
        if v is not None and (type(v) is not bytes or len(v) != TOKEN_BYTES)
    )
    raise ValueError(f"{where}: row {i} is {v!r}; tokens are {TOKEN_BYTES}-byte bytes or None")
