"""The cache's index files: ``manifest.parquet`` (one row per cached sample) and ``failures.parquet``.

``manifest.parquet`` columns, rows in shard order (map_name, log_name, token, scenario_type):
log_name (str), token (str, 16 hex), scenario_type (str), map_name (str), timestamp_us (int64),
shard (int32, index into the shard table), offset (int64, bytes), length (int64, bytes),
crc32 (uint32, of the blob bytes). The parquet schema metadata ``pluto_dvc.cache`` holds a JSON
object: format, codec, checksum ("sha256"), fingerprint, source facts (feature params, hashes),
counts and the shard table ``shards: [{name, sha256, bytes, samples, failures}]``. One file holds
both, so replacing it (temp + rename) switches the whole cache atomically.

``failures.parquet``: log_name, token, scenario_type, map_name, kind (``invalid`` = the feature
builder rejected the sample; ``error`` = an unexpected exception; ``log`` = the log or its map
could not be opened), reason (str).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pluto_dvc.errors import DataError

FORMAT = "pluto-dvc-cache/1"
MANIFEST = "manifest.parquet"
FAILURES = "failures.parquet"
SHARDS = "shards"
META_KEY = b"pluto_dvc.cache"

MANIFEST_SCHEMA = pa.schema(
    [
        ("log_name", pa.string()),
        ("token", pa.string()),
        ("scenario_type", pa.string()),
        ("map_name", pa.string()),
        ("timestamp_us", pa.int64()),
        ("shard", pa.int32()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("crc32", pa.uint32()),
    ]
)
FAILURES_SCHEMA = pa.schema(
    [
        ("log_name", pa.string()),
        ("token", pa.string()),
        ("scenario_type", pa.string()),
        ("map_name", pa.string()),
        ("kind", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: ``table`` (MANIFEST_SCHEMA) and ``meta`` (the JSON object)."""

    cache_dir: Path
    table: pa.Table
    meta: dict[str, Any]

    @property
    def shards(self) -> list[dict[str, Any]]:
        return self.meta["shards"]

    def shard_path(self, index: int) -> Path:
        return self.cache_dir / SHARDS / self.shards[index]["name"]


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temp file beside ``path``, fsync it, rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_manifest(cache_dir: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    """Write ``manifest.parquet`` atomically (the commit point of a build)."""
    table = table.cast(MANIFEST_SCHEMA).replace_schema_metadata(
        {META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )
    write_parquet(cache_dir / MANIFEST, table)


def read_meta(cache_dir: str | Path) -> dict[str, Any] | None:
    """The metadata of an existing manifest (None when there is none or it is unreadable)."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = pq.read_schema(path).metadata or {}
        return json.loads(raw[META_KEY])
    except (pa.ArrowInvalid, OSError, KeyError, ValueError):
        return None


def read_manifest(cache_dir: str | Path) -> Manifest:
    """Load the manifest; DataError naming the problem (missing, unreadable, wrong format)."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} does not exist: build the cache with `dvc repro build_cache`")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (pa.ArrowInvalid, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a readable cache manifest ({exc}); rebuild it") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}; rebuild")
    missing = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; rebuild the cache")
    return Manifest(cache_dir, table.select(MANIFEST_SCHEMA.names), meta)


def read_failures(cache_dir: str | Path) -> pa.Table:
    """``failures.parquet`` (an empty table when there is none)."""
    path = Path(cache_dir) / FAILURES
    if not path.is_file():
        return FAILURES_SCHEMA.empty_table()
    return pq.read_table(path)
