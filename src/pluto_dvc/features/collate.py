"""Batching of flat samples (spec section 2).

Arrays whose shape differs between samples (agents A, polygons M, reference lines R, static
objects S) are zero-padded along their first axis to the batch maximum (False for masks, so the
valid masks tell real rows from padding); arrays of equal shape (``current_state``, ``origin``,
``angle``, ``cost_maps``, ...) are stacked. Every sample must have the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def collate(samples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """(B, ...) batch arrays from B flat samples (``LogFeatureBuilder.build`` outputs)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    keys = list(samples[0])
    for i, sample in enumerate(samples[1:], start=1):
        if set(sample) != set(keys):
            diff = sorted(set(sample) ^ set(keys))
            raise ValueError(f"sample {i} has different keys than sample 0: {diff}")
    batch: dict[str, np.ndarray] = {}
    for key in keys:
        arrays = [np.asarray(s[key]) for s in samples]
        first = arrays[0]
        if all(a.shape == first.shape for a in arrays):
            batch[key] = np.stack(arrays)
            continue
        if any(a.ndim == 0 or a.shape[1:] != first.shape[1:] for a in arrays):
            shapes = sorted({a.shape for a in arrays})
            raise ValueError(f"'{key}': shapes {shapes} differ beyond the first axis")
        size = max(a.shape[0] for a in arrays)
        out = np.zeros((len(arrays), size, *first.shape[1:]), dtype=first.dtype)
        for i, a in enumerate(arrays):
            out[i, : a.shape[0]] = a
        batch[key] = out
    return batch
