"""One sample <-> one compressed blob: a small binary header plus raw array bytes, no pickle.

Blob layout (all little-endian)::

    u32 schema length | schema JSON | u32 dims[sum of ndims] | LZ4 block (HC) of the groups

The schema is ``[[key, dtype, ndim], ...]`` with keys sorted and dtypes as numpy little-endian
strings (``"<f2"``, ``"|b1"``); it is the same for every sample of a cache, so readers parse it once
and cache it. ``dims`` holds every array's shape, in key order. The header is not compressed (about
1 % of a PLUTO sample), so a reader knows every shape before it inflates anything. The compressed
part is the arrays grouped by item size, widest first; a group's block is the concatenation of its
arrays' bytes (in key order), byte-shuffled when items are wider than one byte (all first bytes,
then all second bytes, ...).

Why LZ4-HC over shuffled groups: decoding is the hot loop of training. On PLUTO samples (0.95 MB
raw, 0.72 MB of it the float16 cost map) LZ4-HC level 3 inflates in about half the time of zstd
level 1 at the same size (186 vs 182 kB), and costs ~4 ms more to write; the shuffle makes float
data ~15-30 % smaller. Decoding allocates one buffer per sample (:func:`decode_sample`), or writes
straight into the padded batch arrays (:func:`decode_batch`, equal to
``collate([decode_sample(b) for b in blobs])``).

Only bool, int, uint, float and fixed-width byte/str dtypes are accepted; decoding never builds
Python objects from the blob, so a blob from an untrusted cache cannot run code (LZ4 decoding is
bounds-checked, and the inflated size must equal what the header describes). Decoded arrays are
writable and C-contiguous.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lz4.block
import numpy as np

from pluto_dvc.errors import DataError
from pluto_dvc.features.collate import collate

CODEC = "lz4hc3-grouped-shuffle/2"
LZ4_HC_LEVEL = 3
MAX_SAMPLE_BYTES = 1 << 30  # refuse to inflate a blob beyond 1 GiB (a corrupt or hostile header)
_ALLOWED_KINDS = frozenset("biufSU")
_LEN = struct.Struct("<I")
_ALIGN = 16  # group starts in decoded buffers (any dtype's alignment)
_SMALL_GROUP = 4096  # below this many items a strided copy beats the shift passes
_DIRECT_ITEMS = 1 << 16  # decode_batch un-shuffles arrays this big straight into the batch
_local = threading.local()


class SampleCodecError(DataError):
    """A blob does not decode to a valid sample (corrupt or not written by this codec)."""


@functools.lru_cache(maxsize=256)
def _checked_dtype(text: str) -> np.dtype:
    dtype = np.dtype(text)
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise SampleCodecError(f"dtype {text!r} is not storable (bool, int, float, fixed str only)")
    return dtype


# ----------------------------------------------------------------------------------- shuffling


def _shuffle(block: np.ndarray, k: int) -> bytes:
    """(n * k,) uint8 item bytes -> k byte planes (all first bytes, all second bytes, ...)."""
    if k == 1:
        return block.tobytes()
    if k in (2, 4, 8):
        u = block.view(f"<u{k}")
        return b"".join((u >> (8 * j)).astype(np.uint8).tobytes() for j in range(k))
    return block.reshape(-1, k).T.tobytes()


def _unshuffle_into(planes: np.ndarray, out: np.ndarray) -> None:
    """Inverse of ``_shuffle``: write (k, n) uint8 byte planes as n k-byte items into ``out``.

    ``out``: (n * k,) uint8, contiguous; the rows of ``planes`` need only be contiguous each.
    2/4/8-byte items are rebuilt in place with shift-or passes over the integer view of ``out``
    (no temporaries; ~3x faster than strided byte copies on large arrays).
    """
    k, n = planes.shape
    if k == 1:
        out[:] = planes[0]
        return
    if k in (2, 4, 8) and n >= _SMALL_GROUP:
        items = out.view(f"<u{k}")
        np.copyto(items, planes[k - 1], casting="safe")
        for j in range(k - 2, -1, -1):
            items <<= 8
            items |= planes[j]
        return
    rows = out.reshape(n, k)
    for j in range(k):
        rows[:, j] = planes[j]


# -------------------------------------------------------------------------------------- encode


def encode_sample(sample: Mapping[str, np.ndarray]) -> bytes:
    """Compress a flat ``{key: array}`` sample into one blob (deterministic bytes)."""
    schema, dims = [], []
    groups: dict[int, list[np.ndarray]] = {}
    for key in sorted(sample):
        if not isinstance(key, str) or not key:
            raise SampleCodecError(f"sample keys must be non-empty strings, got {key!r}")
        arr = np.asarray(sample[key])
        dtype = _checked_dtype(arr.dtype.str).newbyteorder("<")
        arr = np.asarray(arr, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
        if arr.nbytes > MAX_SAMPLE_BYTES or any(d >= 1 << 32 for d in arr.shape):
            raise SampleCodecError(f"'{key}' {arr.shape} is too large to store")
        schema.append([key, dtype.str, arr.ndim])
        dims.extend(arr.shape)
        groups.setdefault(dtype.itemsize, []).append(arr.reshape(-1).view(np.uint8))
    head = json.dumps(schema, separators=(",", ":")).encode()
    blocks = b"".join(_shuffle(np.concatenate(groups[k]), k) for k in sorted(groups, reverse=True))
    if len(blocks) > MAX_SAMPLE_BYTES:
        raise SampleCodecError(f"sample holds {len(blocks)} bytes (limit {MAX_SAMPLE_BYTES})")
    packed = lz4.block.compress(
        blocks, mode="high_compression", compression=LZ4_HC_LEVEL, store_size=False
    )
    return b"".join([_LEN.pack(len(head)), head, np.asarray(dims, "<u4").tobytes(), packed])


# -------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Schema:
    """A parsed schema: per array (key order) key, dtype, ndim; groups widest item size first."""

    keys: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    ndims: tuple[int, ...]
    group_sizes: tuple[int, ...]  # item sizes, descending
    group_of: tuple[int, ...]  # per array: index into group_sizes
    itemsizes: tuple[int, ...]
    dim_slices: tuple[tuple[int, int], ...]  # per array: its slice of the dims table
    members: tuple[tuple[int, ...], ...]  # per group: its arrays' indices, in key order


@functools.lru_cache(maxsize=64)
def _parse_schema(head: bytes) -> _Schema:
    try:
        entries = json.loads(head)
        keys, dtypes, ndims = [], [], []
        for key, dtype_text, ndim in entries:
            if not isinstance(key, str) or not isinstance(ndim, int) or not 0 <= ndim <= 32:
                raise ValueError(f"bad entry {key!r} ndim={ndim!r}")
            keys.append(key)
            dtypes.append(_checked_dtype(dtype_text))
            ndims.append(ndim)
    except (ValueError, TypeError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise SampleCodecError(f"blob header is malformed: {what}") from None
    sizes = sorted({d.itemsize for d in dtypes}, reverse=True)
    ends = np.cumsum([0, *ndims]).tolist()
    group_of = tuple(sizes.index(d.itemsize) for d in dtypes)
    return _Schema(
        tuple(keys),
        tuple(dtypes),
        tuple(ndims),
        tuple(sizes),
        group_of,
        tuple(d.itemsize for d in dtypes),
        tuple(zip(ends[:-1], ends[1:], strict=True)),
        tuple(
            tuple(a for a, g in enumerate(group_of) if g == group) for group in range(len(sizes))
        ),
    )


@dataclass(frozen=True)
class _Layout:
    """What one blob holds and where each array goes.

    ``shapes``, ``counts`` (items): per array; ``starts``: per array, byte offset inside its
    group; ``group_bytes``: per group; ``packed_start``: offset of the LZ4 block in the blob;
    ``out_starts``: per group, its (16-aligned) offset in a decoded buffer of ``out_bytes`` bytes.
    """

    schema: _Schema
    shapes: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]
    starts: tuple[int, ...]
    group_bytes: tuple[int, ...]
    packed_start: int
    out_starts: tuple[int, ...]
    out_bytes: int


def _layout(blob: bytes) -> _Layout:
    """Parse a blob's header (nothing is inflated); SampleCodecError when it is malformed."""
    try:
        (head_len,) = _LEN.unpack_from(blob, 0)
        schema = _parse_schema(bytes(blob[4 : 4 + head_len]))
        pos = 4 + head_len
        n_dims = sum(schema.ndims)
        if pos + 4 * n_dims > len(blob):
            raise ValueError("shape table runs past the end")
        dims = np.frombuffer(blob, dtype="<u4", count=n_dims, offset=pos).tolist()
    except (struct.error, ValueError) as exc:
        raise SampleCodecError(f"blob header is malformed: {exc}") from None
    shapes = [tuple(dims[a:b]) for a, b in schema.dim_slices]
    counts = [math.prod(shape) for shape in shapes]
    starts = []
    group_bytes = [0] * len(schema.group_sizes)
    for count, itemsize, group in zip(counts, schema.itemsizes, schema.group_of, strict=True):
        starts.append(group_bytes[group])
        group_bytes[group] += count * itemsize
    if sum(group_bytes) > MAX_SAMPLE_BYTES:
        raise SampleCodecError(f"blob declares {sum(group_bytes)} bytes (limit {MAX_SAMPLE_BYTES})")
    out_starts, end = [], 0
    for size in group_bytes:
        out_starts.append(end)
        end += -(-size // _ALIGN) * _ALIGN
    return _Layout(
        schema,
        tuple(shapes),
        tuple(counts),
        tuple(starts),
        tuple(group_bytes),
        pos + 4 * n_dims,
        tuple(out_starts),
        end,
    )


# -------------------------------------------------------------------------------------- decode


def _inflate(blob: bytes, layout: _Layout) -> np.ndarray:
    """The (n,) uint8 shuffled groups of ``blob``; exactly the size its header describes."""
    size = sum(layout.group_bytes)
    packed = memoryview(blob)[layout.packed_start :]
    if size == 0:
        if len(packed) > 1:  # LZ4 encodes nothing as one zero byte
            raise SampleCodecError(f"blob carries {len(packed)} bytes for an empty sample")
        return np.empty(0, np.uint8)
    try:
        raw = lz4.block.decompress(packed, uncompressed_size=size)
    except lz4.block.LZ4BlockError as exc:
        raise SampleCodecError(f"blob's LZ4 block is corrupt: {exc}") from None
    if len(raw) != size:
        raise SampleCodecError(f"blob inflates to {len(raw)} bytes, its header describes {size}")
    return np.frombuffer(raw, dtype=np.uint8)


def _unshuffle_groups(
    raw: np.ndarray,
    layout: _Layout,
    out: np.ndarray,
    direct: Mapping[int, np.ndarray] | None = None,
) -> None:
    """Un-shuffle every group of ``raw`` into ``out`` at its ``out_starts`` offset.

    ``direct``: array index -> (count * itemsize,) uint8 destination; those arrays go there
    instead of ``out`` (saves copying big arrays out of a scratch buffer).
    """
    schema, pos = layout.schema, 0
    direct = direct or {}
    direct_groups = {schema.group_of[a] for a in direct}
    for g, (k, nbytes, start) in enumerate(
        zip(schema.group_sizes, layout.group_bytes, layout.out_starts, strict=True)
    ):
        planes = raw[pos : pos + nbytes].reshape(k, nbytes // k)
        pos += nbytes
        if g not in direct_groups:
            _unshuffle_into(planes, out[start : start + nbytes])
            continue
        for a in schema.members[g]:
            first, count = layout.starts[a] // k, layout.counts[a]
            dest = direct.get(a)
            if dest is None:
                dest = out[start + first * k : start + (first + count) * k]
            _unshuffle_into(planes[:, first : first + count], dest)


def _views(layout: _Layout, out: np.ndarray) -> dict[str, np.ndarray]:
    schema = layout.schema
    result = {}
    for key, dtype, group, shape, count, start in zip(
        schema.keys,
        schema.dtypes,
        schema.group_of,
        layout.shapes,
        layout.counts,
        layout.starts,
        strict=True,
    ):
        begin = layout.out_starts[group] + start
        result[key] = out[begin : begin + count * dtype.itemsize].view(dtype).reshape(shape)
    return result


def decode_sample(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_sample`; :class:`SampleCodecError` on anything malformed."""
    layout = _layout(blob)
    raw = _inflate(blob, layout)
    out = np.empty(layout.out_bytes, dtype=np.uint8)
    _unshuffle_groups(raw, layout, out)
    return _views(layout, out)


def decode_batch(blobs: Sequence[bytes]) -> dict[str, np.ndarray]:
    """``collate([decode_sample(b) for b in blobs])``, decoded straight into the batch arrays.

    (B, ...) arrays: equal shapes stacked; shapes that differ along the first axis zero-padded to
    the batch maximum (False for masks). ValueError when samples differ in keys or beyond axis 0.
    Uses one per-thread scratch buffer of one sample's size.
    """
    if not blobs:
        raise ValueError("decode_batch needs at least one blob")
    layouts = [_layout(blob) for blob in blobs]
    first = layouts[0].schema
    for i, layout in enumerate(layouts[1:], start=1):
        if layout.schema.keys != first.keys:
            diff = sorted(set(layout.schema.keys) ^ set(first.keys))
            raise ValueError(f"sample {i} has different keys than sample 0: {diff}")
        if layout.schema.dtypes != first.dtypes:  # rare: let numpy promote, as collate does
            return collate([decode_sample(blob) for blob in blobs])
    batch: dict[str, np.ndarray] = {}
    for a, key in enumerate(first.keys):
        shapes = [layout.shapes[a] for layout in layouts]
        dtype = first.dtypes[a]
        if all(s == shapes[0] for s in shapes):
            batch[key] = np.empty((len(blobs), *shapes[0]), dtype=dtype)
            continue
        if any(len(s) == 0 or s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(f"'{key}': shapes {sorted(set(shapes))} differ beyond the first axis")
        batch[key] = np.zeros((len(blobs), max(s[0] for s in shapes), *shapes[0][1:]), dtype)
    scratch = getattr(_local, "out", None)
    for i, (blob, layout) in enumerate(zip(blobs, layouts, strict=True)):
        if scratch is None or scratch.shape[0] < layout.out_bytes:
            scratch = _local.out = np.empty(layout.out_bytes, dtype=np.uint8)
        dests = [
            batch[key][i, : shape[0]] if shape else batch[key][i, ...]
            for key, shape in zip(first.keys, layout.shapes, strict=True)
        ]
        big = {
            a: dests[a].reshape(-1).view(np.uint8)
            for a, count in enumerate(layout.counts)
            if count >= _DIRECT_ITEMS
        }
        _unshuffle_groups(_inflate(blob, layout), layout, scratch, big)
        for a, array in enumerate(_views(layout, scratch).values()):
            if a not in big:
                dests[a][...] = array
    return batch
