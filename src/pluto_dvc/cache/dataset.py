"""Random access to cached samples for training: ``CacheDataset(cache_dir)[i] -> {key: array}``.

Torch-free (wrap it in a ``torch.utils.data.Dataset`` or hand it to a DataLoader as is).
``__getitem__`` is O(1): manifest row -> one ``os.pread`` of (offset, length) -> CRC-32 check ->
decode. There is no directory scan. ``batch(indices)`` returns the collated batch, decoded straight
into the padded (B, ...) arrays: the fast path for training (with a torch DataLoader: pass a
``BatchSampler`` as ``sampler`` and ``batch_size=None``, and let the dataset's ``__getitem__`` call
``batch``). The manifest is checked when it is loaded (checksum, shard names, byte ranges: see
:mod:`.manifest`); each process verifies a shard's SHA-256 the first time it touches it, and a
sample that does not decode is corrupt too: either raises
:class:`~pluto_dvc.cache.shard.CacheCorruptError` naming the shard.
File descriptors are opened lazily per process (safe across ``fork``; the object pickles without
them for spawn-based loaders) and at most ``max_open_files`` stay open.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pluto_dvc.cache.codec import CODEC, SampleCodecError, decode_batch, decode_sample
from pluto_dvc.cache.manifest import read_manifest
from pluto_dvc.cache.shard import CacheCorruptError, corrupt, read_blob, verify_shard
from pluto_dvc.errors import DataError


class CacheDataset:
    """Samples of a built cache, optionally only those of ``log_names`` (e.g. one split part).

    ``table``: the selected manifest rows (log_name, token, scenario_type, map_name,
    timestamp_us, ...); row ``i`` is sample ``i``. ``verify=False`` skips the per-shard SHA-256
    (the per-sample CRC-32 is always checked).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        log_names: Iterable[str] | None = None,
        verify: bool = True,
        max_open_files: int = 64,
    ):
        manifest = read_manifest(cache_dir)
        if manifest.meta.get("codec") != CODEC:
            raise DataError(
                f"cache {cache_dir} was written with codec {manifest.meta.get('codec')!r}; this "
                f"version reads {CODEC!r}. Rebuild it with `dvc repro build_cache` (or "
                "`pluto-dvc build-cache`)"
            )
        table = manifest.table
        if log_names is not None:
            keep = pa.array(sorted(set(log_names)), pa.string())
            table = table.filter(pc.is_in(table.column("log_name"), value_set=keep))
        self.cache_dir = Path(cache_dir)
        self.meta = manifest.meta
        self.table = table
        self.verify = verify
        self.max_open_files = max(1, max_open_files)
        self._shard = table.column("shard").to_numpy().astype(np.int32)
        self._offset = table.column("offset").to_numpy().astype(np.int64)
        self._length = table.column("length").to_numpy().astype(np.int64)
        self._crc = table.column("crc32").to_numpy().astype(np.uint32)
        self._paths = [str(manifest.shard_path(i)) for i in range(len(manifest.shards))]
        self._sha256 = [s["sha256"] for s in manifest.shards]
        self._verified: set[int] = set()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._fds: OrderedDict[int, int] = OrderedDict()

    def __len__(self) -> int:
        return int(self._shard.shape[0])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        blob = self.read_blob(index)
        try:
            return decode_sample(blob)
        except SampleCodecError as exc:
            raise self._undecodable(index, exc) from None

    def batch(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
        """The collated batch of samples ``indices`` (equal to ``collate([self[i] for i in ...])``)."""
        indices = [int(i) for i in indices]
        blobs = [self.read_blob(i) for i in indices]
        try:
            return decode_batch(blobs)
        except SampleCodecError as exc:
            for i, blob in zip(indices, blobs, strict=True):  # name the sample that is bad
                try:
                    decode_sample(blob)
                except SampleCodecError as one:
                    raise self._undecodable(i, one) from None
            raise self._undecodable(indices[0], exc) from None

    def _undecodable(self, index: int, exc: SampleCodecError) -> CacheCorruptError:
        return corrupt(self._paths[int(self._shard[index])], f"sample {index}: {exc}")

    def key(self, index: int) -> tuple[str, str, str]:
        """(log_name, token, scenario_type) of sample ``index``."""
        row = self.table.slice(index, 1).select(["log_name", "token", "scenario_type"])
        return tuple(row.to_pylist()[0].values())  # type: ignore[return-value]

    def read_blob(self, index: int) -> bytes:
        """The compressed blob of sample ``index`` (CRC-checked)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range (cache has {len(self)})")
        shard = int(self._shard[index])
        return read_blob(
            self._fd(shard),
            int(self._offset[index]),
            int(self._length[index]),
            int(self._crc[index]),
            self._paths[shard],
        )

    def _fd(self, shard: int) -> int:
        if os.getpid() != self._pid:  # forked: never share descriptors with the parent
            for inherited in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(inherited)
            self._reset()
        fd = self._fds.get(shard)
        if fd is not None:
            self._fds.move_to_end(shard)
            return fd
        if self.verify and shard not in self._verified:
            verify_shard(self._paths[shard], self._sha256[shard])
            self._verified.add(shard)
        fd = os.open(self._paths[shard], os.O_RDONLY)
        self._fds[shard] = fd
        while len(self._fds) > self.max_open_files:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        if os.getpid() == self._pid:
            for fd in self._fds.values():
                os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = OrderedDict()
        state["_pid"] = -1
        return state
