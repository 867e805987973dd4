"""Which scenario goes into which shard: a pure function of the selection and samples_per_shard.

Scenarios are sorted by (map_name, log_name, token, scenario_type) and cut into shards of whole
logs: consecutive logs of one map are packed while the shard stays within a target size; a log
with more than ``samples_per_shard`` scenarios is split into near-equal parts. The target is
``samples_per_shard``, lowered for small selections to ``ceil(n / MIN_SHARDS)`` so that a few
thousand scenarios still make enough shards (one task each) to keep every worker busy. A log is
read by one task (or one per part), a shard never spans two maps (a worker keeps one map in
memory), and the layout does not depend on scheduling, worker count or on which scenarios fail. Each shard's *spec* hashes the feature fingerprint and its
exact rows (including the identity of each log file): an existing shard with the same spec is the
same work, done.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pluto_dvc.errors import DataError

SELECTION_COLUMNS = ("log_name", "token", "scenario_type", "timestamp_us", "map_name", "log_path")
SORT_KEYS = ["map_name", "log_name", "token", "scenario_type"]
MIN_SHARDS = 256  # small selections get smaller shards (whole logs each) for parallelism


def sort_selection(selection: pd.DataFrame) -> pd.DataFrame:
    """The selection in shard order (index 0..n-1); DataError on missing columns or duplicates."""
    missing = [c for c in SELECTION_COLUMNS if c not in selection.columns]
    if missing:
        raise DataError(
            f"the scenario selection lacks columns {missing}; re-run `dvc repro select_scenarios`"
        )
    table = selection.loc[:, list(SELECTION_COLUMNS)].copy()
    for col in ("log_name", "token", "scenario_type", "map_name", "log_path"):
        table[col] = table[col].astype(str)
    table["timestamp_us"] = table["timestamp_us"].astype(np.int64)
    dup = table.duplicated(["log_name", "token"], keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        raise DataError(
            f"the selection lists scenario token {first.token} of log {first.log_name} "
            f"{int(dup.sum())} times (a token is one scenario); re-run `dvc repro select_scenarios`"
        )
    return table.sort_values(SORT_KEYS, kind="stable").reset_index(drop=True)


def plan_shards(
    table: pd.DataFrame, samples_per_shard: int, min_shards: int = MIN_SHARDS
) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the sorted table, one per shard (see the module doc)."""
    n = len(table)
    if n == 0:
        return []
    target = min(samples_per_shard, math.ceil(n / min_shards))
    logs = table["log_name"].to_numpy()
    maps = table["map_name"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (logs[1:] != logs[:-1]) | (maps[1:] != maps[:-1])])
    stops = np.r_[starts[1:], n]
    ranges: list[tuple[int, int]] = []
    cur_start, cur_stop, cur_map = -1, -1, None
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        size = stop - start
        if cur_start >= 0 and (
            size > samples_per_shard
            or cur_stop - cur_start + size > target
            or maps[start] != cur_map
        ):
            ranges.append((cur_start, cur_stop))
            cur_start = -1
        if size > samples_per_shard:
            parts = math.ceil(size / samples_per_shard)
            cuts = [start + (size * k) // parts for k in range(parts + 1)]
            ranges.extend(zip(cuts[:-1], cuts[1:], strict=True))
            continue
        if cur_start < 0:
            cur_start, cur_map = start, maps[start]
        cur_stop = stop
    if cur_start >= 0:
        ranges.append((cur_start, cur_stop))
    return ranges


def shard_spec(fingerprint: str, rows: pd.DataFrame, log_ids: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the fingerprint and the shard's rows with their log file identities."""
    h = hashlib.sha256(f"{fingerprint}\n".encode())
    for log_name, token, stype, log_path in zip(
        rows["log_name"], rows["token"], rows["scenario_type"], rows["log_path"], strict=True
    ):
        h.update(f"{log_name}\t{log_ids[log_path]}\t{token}\t{stype}\n".encode())
    return h.hexdigest()
