"""Global steps on the compact candidate table: count caps, the timestamp threshold, final order.

Every function takes columns of the table (in log order, then timestamp order: the order of the
devkit's per-type lists) and returns the sorted (K,) int64 row indices to keep. Randomness comes
only from the ``numpy.random.Generator`` passed in, seeded from ``filter.seed``.
Semantics follow nuplan-devkit ``nuplan_scenario_filter_utils`` (see each docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _sample(count: int, keep: int, randomize: bool, rng: np.random.Generator) -> np.ndarray:
    """Positions 0..count-1 to keep: a seeded random subset (sorted) or evenly spaced ones.

    Evenly spaced is the devkit's ``list[::max(count // keep, 1)][:keep]``.
    """
    if keep >= count:
        return np.arange(count)
    if randomize:
        return np.sort(rng.choice(count, size=keep, replace=False))
    return np.arange(0, count, max(count // keep, 1))[:keep]


def num_scenarios_per_type(
    type_code: np.ndarray, limit: int, randomize: bool, rng: np.random.Generator
) -> np.ndarray:
    """Keep at most ``limit`` scenarios of each type (types visited in code order).

    devkit ``filter_num_scenarios_per_type``: a random sample when ``shuffle`` and the type has
    more than ``limit``, else evenly spaced over the type's list. (The devkit keeps a random
    sample in random order; here it keeps table order, which only matters for later equisampling.)
    """
    keep = []
    for code in np.unique(type_code):
        rows = np.flatnonzero(type_code == code)
        keep.append(rows[_sample(len(rows), limit, randomize, rng)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def required_count(total: int, limit: int | float) -> int:
    """Scenarios ``limit_total_scenarios`` asks for: an int count, or ceil(fraction * total)."""
    if isinstance(limit, int):
        return min(limit, total)
    return math.ceil(limit * total)


def limit_total_scenarios(
    type_code: np.ndarray,
    token: np.ndarray,
    unknown_code: int | None,
    limit: int | float,
    randomize: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """devkit ``filter_total_num_scenarios``: drop ``unknown`` scenarios first, then labelled ones.

    required = ``limit`` (int) or ceil(limit * total) (float). If removing unknowns suffices,
    ``unknown`` keeps ``U - (total - required)`` (sampled over its list); otherwise every unknown
    goes and ``required`` labelled scenarios are sampled over the list sorted by token.
    """
    total = len(type_code)
    required = required_count(total, limit)
    if required >= total:
        return np.arange(total)
    if required == 0:
        return np.zeros(0, dtype=np.int64)
    is_unknown = (
        type_code == unknown_code if unknown_code is not None else np.zeros(total, dtype=bool)
    )
    unknown_rows = np.flatnonzero(is_unknown)
    excess = total - required
    if excess < len(unknown_rows):
        kept = unknown_rows[_sample(len(unknown_rows), len(unknown_rows) - excess, randomize, rng)]
        return np.sort(np.concatenate([np.flatnonzero(~is_unknown), kept]))
    labelled = np.flatnonzero(~is_unknown)
    by_token = labelled[np.argsort(token[labelled], kind="stable")]
    return np.sort(by_token[_sample(len(by_token), required, randomize, rng)])


def timestamp_threshold(
    type_code: np.ndarray, timestamp_us: np.ndarray, threshold_s: float
) -> np.ndarray:
    """devkit ``filter_scenarios_by_timestamp``, per type over all logs together.

    A type's scenarios are sorted by timestamp (stable); the first is kept, then each one whose
    time (s, float ``us * 1e-6``) is >= the last kept one's + ``threshold_s``.
    """
    keep = []
    for code in np.unique(type_code):
        rows = np.flatnonzero(type_code == code)
        rows = rows[np.argsort(timestamp_us[rows], kind="stable")]
        seconds = timestamp_us[rows] * 1e-6
        i, chosen = 0, []
        while i < len(rows):
            chosen.append(i)
            nxt = int(np.searchsorted(seconds, seconds[i] + threshold_s, side="left"))
            i = max(i + 1, nxt)
        keep.append(rows[chosen])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def final_order(token: np.ndarray, shuffle: bool, rng: np.random.Generator) -> np.ndarray:
    """Row order of the result: sorted by token, then permuted with the seed if ``shuffle``."""
    order = np.argsort(token, kind="stable")
    return order[rng.permutation(len(order))] if shuffle else order


def type_counts(type_code: np.ndarray, type_names: Sequence[str]) -> dict[str, int]:
    """{type name: count} for the types present, sorted by name."""
    codes, counts = np.unique(type_code, return_counts=True)
    return dict(sorted((type_names[c], int(n)) for c, n in zip(codes, counts, strict=True)))
