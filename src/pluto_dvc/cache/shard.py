"""Shard files: many compressed samples in one file, named by the SHA-256 of its bytes.

Layout of ``shards/<sha256 hex>.shard``::

    b"PLUTOSH1"                      8-byte magic
    blob 0 | blob 1 | ...            one ``codec`` blob per sample, back to back
    footer                           UTF-8 JSON (sorted keys): what the shard holds, see builder
    trailer (24 bytes)               u64 footer offset | u32 footer length | u32 crc32(footer)
                                     | b"PLUTOEND"  (little-endian)

A shard is written to a temporary file in the same folder, fsynced, and renamed to its digest:
a file with a final name is always complete, and identical content always gets the same name.
Every sample is located by (offset, length) and checked by the CRC-32 of its blob bytes; the whole
file is checked against its SHA-256 (the name, also stored in the manifest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pluto_dvc.cache.codec import MAX_SAMPLE_BYTES
from pluto_dvc.errors import DataError
from pluto_dvc.io import with_path

MAGIC = b"PLUTOSH1"
END = b"PLUTOEND"
SUFFIX = ".shard"
TMP_PREFIX = ".tmp-"
_TRAILER = struct.Struct("<QII8s")
_NAME = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
# The largest blob a reader accepts: a sample's limit plus LZ4's worst-case growth and a header.
MAX_BLOB_BYTES = MAX_SAMPLE_BYTES + MAX_SAMPLE_BYTES // 255 + (1 << 20)


class CacheCorruptError(DataError):
    """A shard or sample does not match its checksum (or is not a shard at all)."""


def corrupt(shard: str | Path, what: str) -> CacheCorruptError:
    return CacheCorruptError(
        f"cache shard {shard} is corrupt: {what}. Restore it with `dvc checkout data/cache` "
        "(or run `dvc repro -f build_cache`, which writes only the corrupt shards again); "
        "`pluto-dvc cache verify` checks every shard"
    )


def is_shard_name(name: str) -> bool:
    """True for ``<64 hex>.shard`` (a finished shard; temporaries start with ``.tmp-``)."""
    return name.endswith(SUFFIX) and _NAME.fullmatch(name[: -len(SUFFIX)]) is not None


def shard_data_end(size: int) -> int:
    """The furthest a blob can reach in a shard file of ``size`` bytes (its trailer follows)."""
    return size - _TRAILER.size


@dataclass(frozen=True)
class BlobRef:
    """Where one sample's blob is: ``length`` bytes at ``offset`` of ``path``, with its CRC-32."""

    path: str
    offset: int
    length: int
    crc32: int


class ShardWriter:
    """Append blobs, then :meth:`finish` with a footer: returns the final path.

    Use as a context manager: an exception (or a kill) leaves only a ``.tmp-*`` file, which the
    next build deletes.
    """

    def __init__(self, directory: str | Path, tag: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tmp = self.directory / f"{TMP_PREFIX}{tag}-{os.getpid()}{SUFFIX}"
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._hash = hashlib.sha256()
        self._pos = 0
        self._write(MAGIC)

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:  # a full disk: say which file
            raise with_path(exc, self.tmp) from None
        self._hash.update(data)
        self._pos += len(data)

    def add(self, blob: bytes) -> tuple[int, int, int]:
        """Append one blob; returns (offset, length, crc32)."""
        offset = self._pos
        self._write(blob)
        return offset, len(blob), zlib.crc32(blob)

    def finish(self, footer: dict[str, Any]) -> Path:
        """Write footer + trailer, fsync, rename to ``<sha256>.shard``; returns that path."""
        data = json.dumps(footer, sort_keys=True, separators=(",", ":")).encode()
        offset = self._pos
        self._write(data)
        self._write(_TRAILER.pack(offset, len(data), zlib.crc32(data), END))
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise with_path(exc, self.tmp) from None
        self._file.close()
        final = self.directory / f"{self._hash.hexdigest()}{SUFFIX}"
        os.replace(self.tmp, final)
        _fsync_dir(self.directory)
        return final

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._file.closed:
            self.abort()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_footer(path: str | Path) -> dict[str, Any]:
    """The footer of a shard (checked by magic, trailer and CRC-32; not the whole-file hash)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < len(MAGIC) + _TRAILER.size:
                raise corrupt(path, f"only {size} bytes")
            f.seek(0)
            if f.read(len(MAGIC)) != MAGIC:
                raise corrupt(path, "wrong magic (not a pluto-dvc shard)")
            f.seek(size - _TRAILER.size)
            offset, length, crc, end = _TRAILER.unpack(f.read(_TRAILER.size))
            if end != END or offset + length != size - _TRAILER.size:
                raise corrupt(path, "bad trailer (truncated?)")
            f.seek(offset)
            data = f.read(length)
    except OSError as exc:
        raise DataError(f"cannot read cache shard {path}: {exc}") from None
    if zlib.crc32(data) != crc:
        raise corrupt(path, "footer checksum mismatch")
    try:
        footer = json.loads(data)
    except (ValueError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise corrupt(path, f"footer is not JSON ({what})") from None
    if not isinstance(footer, dict):
        raise corrupt(path, "footer is not a JSON object")
    return footer


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_shard(path: str | Path, sha256: str | None = None) -> None:
    """Raise :class:`CacheCorruptError` unless the file hashes to ``sha256`` (default: its name)."""
    path = Path(path)
    expected = sha256 or path.name[: -len(SUFFIX)]
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise DataError(f"cannot read cache shard {path}: {exc}") from None
    if actual != expected:
        raise corrupt(path, f"SHA-256 is {actual[:16]}..., expected {expected[:16]}...")


def read_blob(fd: int, ref_offset: int, length: int, crc32: int, shard: str | Path) -> bytes:
    """``length`` bytes at ``ref_offset`` of an open shard, checked against ``crc32``.

    Offsets and lengths come from a manifest or footer, which may be crafted: they are bounded
    (``0 < length <= MAX_BLOB_BYTES``, ``offset >= len(MAGIC)``) before anything is read.
    """
    if ref_offset < len(MAGIC) or not 0 < length <= MAX_BLOB_BYTES:
        raise corrupt(shard, f"sample at offset {ref_offset} has an impossible length {length}")
    try:
        blob = os.pread(fd, length, ref_offset)
    except (OSError, OverflowError) as exc:
        raise corrupt(shard, f"sample at offset {ref_offset} cannot be read ({exc})") from None
    if len(blob) != length:
        raise corrupt(shard, f"sample at offset {ref_offset} is truncated")
    if zlib.crc32(blob) != crc32:
        raise corrupt(shard, f"sample at offset {ref_offset} fails its CRC-32")
    return blob
