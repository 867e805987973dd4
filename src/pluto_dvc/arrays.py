"""The array-record toolkit: shape/dtype checks and CSR (offsets) helpers every record uses.

A typed array record is a dataclass of numpy arrays whose docstring gives each field's shape,
dtype, unit and frame; its ``validate()`` checks them with :func:`check_fields`. A malformed record
raises ``ValueError("<Record>: <field> has shape (3,), expected (4,)")`` (or ``has dtype int32,
expected int64``), which names what a caller got wrong.

Variable-length rows are CSR: ``offsets`` is ``(K+1,) int64``, starts at 0, never decreases, ends
at the number of values, and row k owns ``values[offsets[k]:offsets[k+1]]``
(:func:`check_offsets`, :func:`offsets_from_counts`, :func:`ranges`, :func:`offsets_of_sorted`).
:func:`lookup_sorted` finds keys in a sorted key array (fids, tokens as integers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

STR = "str"  # dtype spec of a numpy unicode (``U``) array of any width


def check(cond: bool, record: str, message: str) -> None:
    """``ValueError("<record>: <message>")`` unless ``cond``."""
    if not cond:
        raise ValueError(f"{record}: {message}")


def check_spec(
    record: object,
    spec: Mapping[str, tuple[str, tuple[int | str, ...]]],
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Check each named field of ``record`` against ``spec``: name -> (dtype, shape pattern). A
    pattern holds ints and size names ("A", "T", ...); a name must mean the same size in every
    field (``sizes`` pre-binds some). dtype :data:`STR` is any unicode width. Returns the sizes."""
    sizes = dict(sizes or {})
    cls = type(record).__name__
    for name, (dtype, pattern) in spec.items():
        value = getattr(record, name)
        check(isinstance(value, np.ndarray), cls, f"{name} is not a numpy array")
        if dtype == STR:
            check(value.dtype.kind == "U", cls, f"{name} has dtype {value.dtype}, expected str (U)")
        else:
            check(
                value.dtype == np.dtype(dtype),
                cls,
                f"{name} has dtype {value.dtype}, expected {dtype}",
            )
        ok = value.ndim == len(pattern)
        for dim, want in zip(value.shape, pattern, strict=False):
            if isinstance(want, str):
                want = sizes.setdefault(want, dim)
            ok = ok and dim == want
        if not ok:
            expected = [sizes.get(d, d) if isinstance(d, str) else d for d in pattern]
            text = ", ".join(map(str, expected)) + ("," if len(expected) == 1 else "")
            check(False, cls, f"{name} has shape {value.shape}, expected ({text})")
    return sizes


def check_fields(record: object, n: int, dtypes: Mapping[str, str]) -> None:
    """Each named field of ``record`` is a numpy array of shape ``(n,)`` and the given dtype."""
    check_spec(record, {name: (dtype, (n,)) for name, dtype in dtypes.items()})


def check_offsets(record: str, name: str, offsets: np.ndarray, n: int, num_values: int) -> None:
    """``offsets`` is the (n+1,) int64 CSR index of ``num_values`` values."""
    check(
        isinstance(offsets, np.ndarray) and offsets.shape == (n + 1,),
        record,
        f"{name} must have shape (K+1,) = ({n + 1},)",
    )
    check(offsets.dtype == np.int64, record, f"{name} must be int64")
    check(
        offsets[0] == 0 and offsets[-1] == num_values, record, f"{name} must span the {num_values}"
    )
    check(bool(np.all(np.diff(offsets) >= 0)), record, f"{name} must be non-decreasing")


def check_sorted_unique(record: str, name: str, values: np.ndarray) -> None:
    check(bool(np.all(np.diff(values) > 0)), record, f"{name} must be sorted, unique")


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    """(K+1,) int64 CSR offsets of rows holding ``counts`` values each."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def offsets_of_sorted(sorted_rows: np.ndarray, num_rows: int) -> np.ndarray:
    """(num_rows+1,) int64 offsets of values already sorted by their row in [0, num_rows)."""
    return np.searchsorted(sorted_rows, np.arange(num_rows + 1)).astype(np.int64)


def csr_row(offsets: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """The values of row ``k`` of a CSR (a view)."""
    return values[offsets[k] : offsets[k + 1]]


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), int64."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - offsets_from_counts(counts)[:-1], counts)
    return shift + np.arange(total, dtype=np.int64)


def lookup_sorted(
    sorted_keys: np.ndarray, keys: np.ndarray | Iterable, order: np.ndarray | None = None
) -> np.ndarray:
    """(M,) int64 row of each key, -1 where absent. ``sorted_keys`` is ascending; ``order`` maps
    its positions to rows of the original table (None: the positions are the rows)."""
    keys = np.asarray(keys)
    if sorted_keys.size == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    rows = pos if order is None else order[pos]
    return np.where(sorted_keys[pos] == keys, rows, -1).astype(np.int64)
