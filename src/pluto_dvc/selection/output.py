"""Write and read the selection: ``scenarios.parquet`` and its summary json, atomically.

Columns of ``scenarios.parquet`` (one row per scenario, in selection order):
log_name (str), token (str, 16 hex), scenario_type (str), timestamp_us (int64), map_name (str),
log_path (str, the .db path relative to the data root, POSIX; real nuPlan:
``nuplan-v1.1/splits/<split>/<log>.db``). Same inputs give byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pluto_dvc.errors import DataError
from pluto_dvc.io import temp_file_beside
from pluto_dvc.selection.table import CandidateTable

COLUMNS = ("log_name", "token", "scenario_type", "timestamp_us", "map_name", "log_path")
SCHEMA = pa.schema(
    [
        ("log_name", pa.string()),
        ("token", pa.string()),
        ("scenario_type", pa.string()),
        ("timestamp_us", pa.int64()),
        ("map_name", pa.string()),
        ("log_path", pa.string()),
    ]
)


def token_strings(keys: np.ndarray) -> pa.StringArray:
    """(K,) uint64 token keys -> arrow strings of 16 lowercase hex characters (no Python loop)."""
    raw = np.ascontiguousarray(keys.astype(">u8")).tobytes().hex().encode("ascii")
    offsets = np.arange(0, 16 * len(keys) + 1, 16, dtype=np.int32)
    return pa.StringArray.from_buffers(len(keys), pa.py_buffer(offsets), pa.py_buffer(raw))


def _lookup(codes: np.ndarray, values: list[str] | tuple[str, ...]) -> pa.Array:
    """values[codes] as a plain string array, built in Arrow."""
    return pc.take(pa.array(list(values), pa.string()), pa.array(codes, pa.int32()))


def to_arrow(table: CandidateTable) -> pa.Table:
    """The selection as an Arrow table with ``SCHEMA``."""
    logs = table.logs
    columns = [
        _lookup(table.log, logs.log_name),
        token_strings(table.token),
        _lookup(table.type_code, table.type_names),
        pa.array(table.timestamp_us, pa.int64()),
        _lookup(table.log, logs.map_name),
        _lookup(table.log, logs.rel_path),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_selection(
    table: CandidateTable,
    summary: dict[str, Any],
    scenarios_path: str | os.PathLike,
    summary_path: str | os.PathLike,
) -> None:
    """Write the parquet file and the summary json (each atomically)."""
    arrow = to_arrow(table)
    atomic_write(scenarios_path, lambda tmp: pq.write_table(arrow, tmp, compression="zstd"))
    write_json(summary_path, summary)


def read_scenarios(path: str | os.PathLike) -> pa.Table:
    """Read ``scenarios.parquet``; DataError when it is missing or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: run `dvc repro select_scenarios` first")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file ({exc}); re-run selection") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; re-run `dvc repro select_scenarios`")
    return table
