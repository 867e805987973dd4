"""The cache's index files: ``manifest.parquet`` (one row per cached sample) and ``failures.parquet``.

``manifest.parquet`` columns, rows in shard order (map_name, log_name, token, scenario_type):
log_name (str), token (str, 16 hex), scenario_type (str), map_name (str), timestamp_us (int64),
shard (int32, index into the shard table), offset (int64, bytes), length (int64, bytes),
crc32 (uint32, of the blob bytes). The parquet schema metadata ``pluto_dvc.cache`` holds a JSON
object: format, codec, checksum ("sha256"), fingerprint, source facts (feature params, hashes),
counts and the shard table ``shards: [{name, sha256, bytes, samples, failures}]``. One file holds
both, so replacing it (temp + rename) switches the whole cache atomically.

Integrity: ``manifest_sha256`` (in the metadata) is the SHA-256 of the rest of the metadata and of
every row (:func:`rows_sha256`); :func:`read_manifest` recomputes it (about 0.2 s per million rows)
and checks what a reader relies on before any shard is opened: shard names are content-addressed
(``<64 hex>.shard``, nothing else is ever opened), every row points at a listed shard and lies inside
it, and the row count equals the metadata's ``num_samples``. Anything else is a
:class:`~pluto_dvc.cache.shard.CacheCorruptError` naming the manifest.

``failures.parquet``: log_name, token, scenario_type, map_name, kind (``invalid`` = the feature
builder rejected the sample; ``error`` = an unexpected exception; ``log`` = the log or its map
could not be opened), reason (str).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pluto_dvc.cache.shard import MAGIC, CacheCorruptError, is_shard_name, shard_data_end
from pluto_dvc.errors import DataError
from pluto_dvc.io import temp_file_beside, with_path

FORMAT = "pluto-dvc-cache/2"  # 2: the manifest carries manifest_sha256
CHECKSUM_KEY = "manifest_sha256"
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
    tmp = temp_file_beside(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise with_path(exc, path) from None
        raise


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def rows_sha256(table: pa.Table) -> str:
    """SHA-256 of the manifest rows: per column, fixed-width values (little-endian) or the
    lengths and UTF-8 bytes of strings; independent of how the table is chunked."""
    h = hashlib.sha256(f"{table.num_rows}\n".encode())
    for field in MANIFEST_SCHEMA:
        column = table.column(field.name)
        if column.null_count:
            raise ValueError(f"column {field.name} holds {column.null_count} nulls")
        h.update(f"{field.name}\n".encode())
        if pa.types.is_string(field.type):
            lengths, data = hashlib.sha256(), hashlib.sha256()
            for chunk in column.chunks:
                offsets = np.frombuffer(chunk.buffers()[1], np.int32)
                offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
                lengths.update(np.diff(offsets).astype("<i8").tobytes())
                if len(chunk):
                    data.update(memoryview(chunk.buffers()[2])[offsets[0] : offsets[-1]])
            h.update(lengths.digest() + data.digest())
        else:
            dtype = np.dtype(field.type.to_pandas_dtype()).newbyteorder("<")
            for chunk in column.chunks:
                h.update(chunk.to_numpy(zero_copy_only=False).astype(dtype).tobytes())
    return h.hexdigest()


def _manifest_sha256(table: pa.Table, meta: dict[str, Any]) -> str:
    rest = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    text = json.dumps(rest, sort_keys=True) + "\n" + rows_sha256(table)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(cache_dir: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    """Write ``manifest.parquet`` atomically (the commit point of a build), with its checksum."""
    table = table.cast(MANIFEST_SCHEMA)
    meta = {**meta, CHECKSUM_KEY: _manifest_sha256(table, meta)}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    write_parquet(cache_dir / MANIFEST, table)


def read_meta(cache_dir: str | Path) -> dict[str, Any] | None:
    """The metadata of an existing manifest (None when there is none or it is unreadable)."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = pq.read_schema(path).metadata or {}
        meta = json.loads(raw[META_KEY])
    except (pa.ArrowInvalid, OSError, KeyError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def corrupt_manifest(path: Path, what: str) -> CacheCorruptError:
    return CacheCorruptError(
        f"cache manifest {path} is corrupt: {what}. Restore it with `dvc checkout data/cache`, "
        "or rebuild it with `dvc repro build_cache` (shards that are intact are kept)"
    )


def load_manifest(cache_dir: str | Path) -> Manifest:
    """The manifest as stored, unchecked (DataError when missing, unreadable or of another
    format); :func:`read_manifest` is what readers use."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} does not exist: build the cache with `dvc repro build_cache`")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except RecursionError:
        raise corrupt_manifest(path, "its metadata is nested too deeply") from None
    except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a readable cache manifest ({exc}); rebuild it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(
            f"{path} has format {found!r}, expected {FORMAT!r}; rebuild it with "
            "`dvc repro build_cache` (or `pluto-dvc build-cache`)"
        )
    missing = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; rebuild the cache")
    try:
        table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise corrupt_manifest(path, f"its columns have the wrong types ({exc})") from None
    return Manifest(cache_dir, table.replace_schema_metadata(None), meta)


def read_manifest(cache_dir: str | Path) -> Manifest:
    """Load and check the manifest (see the module doc).

    DataError when it is missing, unreadable or of another format; CacheCorruptError when its
    checksum, shard table or rows are wrong.
    """
    manifest = load_manifest(cache_dir)
    problems = manifest_problems(manifest)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise corrupt_manifest(manifest.cache_dir / MANIFEST, problems[0] + more)
    return manifest


def bad_shard_entries(meta: dict[str, Any]) -> list[str]:
    """Problems of the shard table: names must be ``<sha256>.shard``, sizes and counts integers."""
    shards = meta.get("shards")
    if not isinstance(shards, list):
        return ["its metadata has no shard table"]
    problems = []
    for i, shard in enumerate(shards):
        name = shard.get("name") if isinstance(shard, dict) else None
        if not isinstance(name, str) or not is_shard_name(name):
            problems.append(f"shard {i} is named {name!r}, not <sha256>.shard (content-addressed)")
        elif shard.get("sha256") != name.removesuffix(".shard"):
            problems.append(f"shard {name} has a sha256 entry that differs from its name")
        elif any(type(shard.get(k)) is not int for k in ("bytes", "samples", "failures")):
            problems.append(f"shard {name} lacks its byte, sample or failure count")
    return problems


def manifest_problems(manifest: Manifest) -> list[str]:
    """Everything wrong with a loaded manifest: checksum, shard table, rows (vectorised)."""
    table, meta = manifest.table, manifest.meta
    problems = []
    try:
        if meta.get(CHECKSUM_KEY) != _manifest_sha256(table, meta):
            problems.append("its rows or metadata do not match its checksum")
    except (pa.ArrowException, ValueError, TypeError) as exc:
        problems.append(f"its rows cannot be checked ({exc})")
    bad_entries = bad_shard_entries(meta)
    if bad_entries:
        return problems + bad_entries
    shards = meta["shards"]
    if table.num_rows != meta.get("num_samples"):
        problems.append(
            f"it has {table.num_rows} rows, its metadata num_samples says "
            f"{meta.get('num_samples')!r}"
        )
    listed = sum(s["samples"] for s in shards)
    if table.num_rows != listed:
        problems.append(f"it has {table.num_rows} rows, its shard table lists {listed} samples")
    index = table.column("shard").to_numpy()
    bad = np.flatnonzero((index < 0) | (index >= len(shards)))
    if len(bad):
        where = f"row {bad[0]} points at shard {index[bad[0]]}; it lists {len(shards)} shards"
        return [*problems, where]
    offset = table.column("offset").to_numpy()
    length = table.column("length").to_numpy()
    ends = np.asarray([shard_data_end(s["bytes"]) for s in shards], dtype=np.int64)
    end = ends[index] if len(shards) else np.zeros(0, np.int64)
    bad = np.flatnonzero((offset < len(MAGIC)) | (length <= 0) | (length > end - offset))
    if len(bad):
        r = int(bad[0])
        problems.append(
            f"{len(bad)} row(s) lie outside their shard, first row {r}: offset {offset[r]}, "
            f"length {length[r]} in shard {shards[index[r]]['name']}"
        )
    if len(index) and (np.diff(index) < 0).any():
        problems.append("its rows are not in shard order")
    return problems


def read_failures(cache_dir: str | Path) -> pa.Table:
    """``failures.parquet`` (an empty table when there is none)."""
    path = Path(cache_dir) / FAILURES
    if not path.is_file():
        return FAILURES_SCHEMA.empty_table()
    return pq.read_table(path)
