"""Which 15 s scenarios the open-loop evaluation runs, and the frames at which the planner is queried.

A scenario starts at a selected frame (a row of ``data/scenarios.parquet`` whose log is in the
evaluated part of ``data/splits.json``) and lasts ``scenario_duration_s``; the planner is queried
every ``query_interval_s`` (frames 0, 1, ..., 14 s for the defaults). A scenario is usable when
the log holds the feature history before its first queried frame and the longest comparison
horizon (and the feature future) after its last one. Per type at most ``scenarios_per_type``
usable scenarios are kept, a seeded choice of scenarios that start ``min_separation_s`` apart;
the result is ordered by (log, time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pluto_dvc.errors import DataError
from pluto_dvc.features.builder import LOG_FRAME_S
from pluto_dvc.nuplan.log_records import LogArrays
from pluto_dvc.nuplan.log_schema import tokens_hex
from pluto_dvc.params import EvaluateParams, FeatureParams


def log_frames(seconds: float) -> int:
    """Log frames (20 Hz nuPlan lidar clock) in ``seconds``."""
    return int(round(seconds / LOG_FRAME_S))


@dataclass(frozen=True)
class ScenarioTiming:
    """Frame offsets, in log frames: query offsets (Q,) from the scenario start, frames of history
    needed before a queried frame, of future needed after it, and per comparison point."""

    query_offsets: tuple[int, ...]
    history: int
    future: int
    comparison_step: int

    @classmethod
    def of(cls, evaluate: EvaluateParams, features: FeatureParams) -> ScenarioTiming:
        count = int(np.floor(evaluate.scenario_duration_s / evaluate.query_interval_s + 1e-9))
        step = log_frames(evaluate.query_interval_s)
        horizon = max(max(evaluate.comparison_horizons_s), features.future_horizon_s)
        return cls(
            query_offsets=tuple(i * step for i in range(max(count, 1))),
            history=log_frames(features.history_horizon_s),
            future=log_frames(horizon),
            comparison_step=log_frames(evaluate.comparison_interval_s),
        )

    def usable(self, frame: np.ndarray, num_frames: int) -> np.ndarray:
        """(n,) bool: scenarios starting at ``frame`` fit in a log of ``num_frames`` frames."""
        return (frame - self.history >= 0) & (
            frame + self.query_offsets[-1] + self.future <= num_frames - 1
        )


def read_split_logs(splits_path: str | Path, part: str) -> list[str]:
    """The log names of one part of ``splits.json``; DataError when missing or empty."""
    path = Path(splits_path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: run `dvc repro split` first")
    try:
        parts = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-run `dvc repro split`") from None
    logs = parts.get(part) if isinstance(parts, dict) else None
    if not logs:
        raise DataError(
            f"{path} has no logs in part '{part}' (evaluate.split_part): re-run the split or "
            "choose another part"
        )
    return sorted(logs)


def candidate_rows(
    selection: pd.DataFrame, logs: list[str], types: list[str] | None
) -> pd.DataFrame:
    """Selection rows of ``logs`` (and ``types``), ordered by (log, time, token)."""
    rows = selection[selection.log_name.isin(logs)]
    if types is not None:
        rows = rows[rows.scenario_type.isin(types)]
    return rows.sort_values(["log_name", "timestamp_us", "token"]).reset_index(drop=True)


def usable_rows(rows: pd.DataFrame, log: LogArrays, timing: ScenarioTiming) -> np.ndarray:
    """(n,) int frame index of each row of one log's candidates; -1 when the scenario does not fit
    (or its token is not a frame of the log)."""
    index = {t: i for i, t in enumerate(tokens_hex(log.clock.token).tolist())}
    frame = np.array([index.get(t, -1) for t in rows.token], dtype=np.int64)
    ok = (frame >= 0) & timing.usable(frame, log.num_frames)
    return np.where(ok, frame, -1)


def choose_per_type(
    usable: pd.DataFrame, cap: int | None, seed: int, min_separation_s: float = 0.0
) -> pd.DataFrame:
    """At most ``cap`` rows per scenario type, a seeded choice (types in sorted order) whose
    starts in one log are at least ``min_separation_s`` apart (consecutive frames share their
    tags: without it a type's scenarios would mostly be the same event). Ordered by (log, time,
    token)."""
    rng = np.random.default_rng(seed)
    gap_us = int(round(min_separation_s * 1e6))
    parts = []
    for _, group in sorted(usable.groupby("scenario_type"), key=lambda kv: kv[0]):
        order = rng.permutation(len(group)) if cap is not None else np.arange(len(group))
        taken: list[int] = []
        starts: dict[str, list[int]] = {}
        for i in order:
            row = group.iloc[i]
            mine = starts.setdefault(row.log_name, [])
            if gap_us and any(abs(int(row.timestamp_us) - t) < gap_us for t in mine):
                continue
            mine.append(int(row.timestamp_us))
            taken.append(int(i))
            if cap is not None and len(taken) == cap:
                break
        parts.append(group.iloc[np.sort(taken)])
    chosen = pd.concat(parts) if parts else usable.iloc[:0]
    return chosen.sort_values(["log_name", "timestamp_us", "token"]).reset_index(drop=True)
