"""Opening nuPlan's SQLite files (log .db, map .gpkg): header check and read-only connection.

``check_sqlite_file`` reads the 100-byte SQLite header before any library opens the file, so a
truncated download or a file of another kind is reported as such (SQLite itself would often open
it and fail later, or read it as empty). ``connect_read_only`` opens a database with
``mode=ro``: reading never creates, locks for writing or modifies a dataset file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pluto_dvc.errors import DataError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100


def check_sqlite_file(path: Path, what: str, kind: str, fix: str) -> None:
    """DataError unless ``path`` starts with an SQLite header and is as long as it says.

    what: how the file is named in messages ("nuPlan log", "map file"). kind: what it should be
    ("an SQLite database", "a GeoPackage"). fix: how to repair it (ends the message).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(HEADER_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from exc
    if len(header) < HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        raise corrupt(path, what, f"is not {kind} ({size} bytes, no SQLite header)", fix)
    # SQLite header: page size at 16 (1 means 65536), page count at 28, valid when the change
    # counter (24) equals the version-valid-for number (92).
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96] and pages * page_size > size:
        raise corrupt(
            path,
            what,
            f"is truncated: its header says {pages * page_size} bytes, it has {size}",
            fix,
        )


def corrupt(path: Path, what: str, problem: str, fix: str) -> DataError:
    return DataError(f"{what} {path} {problem}: the file is corrupt or truncated; {fix}.")


@contextmanager
def connect_read_only(path: Path, what: str, fix: str) -> Iterator[sqlite3.Connection]:
    """Check the header, open ``path`` read-only; SQLite errors become DataError naming it."""
    check_sqlite_file(path, what, "an SQLite database", fix)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"cannot open {what} {path}: {exc}") from exc
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        raise corrupt(path, what, f"cannot be read ({exc})", fix) from exc
    finally:
        con.close()
