"""Pass 1, per log: enumerate candidate scenarios and apply the SQL-level filters.

The devkit's rules (``nuplan.scenarios.enumerate_scenarios``: usable scenes, ``unknown`` for
untagged frames, greatest surviving tag) run on a narrow read of the log; the result is a few
compact columns per log, never one Python object per scenario. SQL-level filters, in order:
``map_names`` (whole log), ``scenario_types``, ``scenario_tokens``, ``remove_invalid_goals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pluto_dvc.nuplan.log_reader import read_log_meta
from pluto_dvc.nuplan.log_records import LidarClock, ScenarioTags, Scenes
from pluto_dvc.nuplan.scenarios import enumerate_scenarios, usable_scenes
from pluto_dvc.selection.logread import read_selection_log

SQL_FILTERS = ("scenario_types", "scenario_tokens", "remove_invalid_goals")


@dataclass(frozen=True)
class EnumerateTask:
    """Pass-1 work of one log. ``scenario_tokens``: sorted (K,) uint64 keys or None."""

    path: str
    rel_path: str
    scenario_types: tuple[str, ...] | None
    scenario_tokens: np.ndarray | None
    map_names: tuple[str, ...] | None
    remove_invalid_goals: bool


@dataclass
class LogCandidates:
    """Candidates of one log that passed the SQL-level filters, in frame (timestamp) order.

    token: (M,) uint64 lidar_pc token as an integer (big-endian bytes; order = hex order).
    timestamp_us: (M,) int64. type_code: (M,) int32 index into ``type_names`` (sorted names).
    num_enumerated: candidates before any filter. removed: scenarios removed per SQL filter.
    map_skipped: the log's map is not in ``map_names`` (nothing was enumerated).
    """

    log_name: str
    map_name: str
    rel_path: str
    token: np.ndarray
    timestamp_us: np.ndarray
    type_names: tuple[str, ...]
    type_code: np.ndarray
    num_enumerated: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    map_skipped: bool = False

    def __len__(self) -> int:
        return int(self.token.shape[0])


@dataclass
class _EnumerationView:
    """The parts of ``LogArrays`` that ``enumerate_scenarios`` reads (clock, scenes, tags)."""

    clock: LidarClock
    scenes: Scenes
    tags: ScenarioTags

    @property
    def num_frames(self) -> int:
        return len(self.clock)


def _empty(task: EnumerateTask, log_name: str, map_name: str) -> LogCandidates:
    return LogCandidates(
        log_name=log_name,
        map_name=map_name,
        rel_path=task.rel_path,
        token=np.zeros(0, dtype=np.uint64),
        timestamp_us=np.zeros(0, dtype=np.int64),
        type_names=(),
        type_code=np.zeros(0, dtype=np.int32),
    )


def enumerate_log(task: EnumerateTask) -> LogCandidates:
    """Candidates of one log after the SQL-level filters (a top-level function: picklable)."""
    path = Path(task.path)
    meta = read_log_meta(path)
    if task.map_names is not None and meta.location not in task.map_names:
        out = _empty(task, meta.log_name, meta.location)
        out.map_skipped = True
        return out
    log = read_selection_log(path, meta=meta)
    view = _EnumerationView(clock=log.clock, scenes=log.scenes, tags=log.tags)
    scene = log.clock.scene_index
    in_usable = np.zeros(log.num_frames, dtype=bool)
    in_usable[scene >= 0] = usable_scenes(len(log.scenes))[scene[scene >= 0]]
    num_enumerated = int(in_usable.sum())  # without a type filter every such frame is one

    found = enumerate_scenarios(view, task.scenario_types)  # type: ignore[arg-type]
    frames = found.frame_index.astype(np.int64)
    keep = np.ones(len(frames), dtype=bool)
    removed = {"scenario_types": num_enumerated - len(frames)}
    if task.scenario_tokens is not None:
        step = np.isin(log.clock_keys[frames], task.scenario_tokens)
        removed["scenario_tokens"] = int((keep & ~step).sum())
        keep &= step
    if task.remove_invalid_goals:
        step = log.goal_valid[scene[frames]]
        removed["remove_invalid_goals"] = int((keep & ~step).sum())
        keep &= step

    frames = frames[keep]
    type_names, type_code = np.unique(found.scenario_type[keep], return_inverse=True)
    return LogCandidates(
        log_name=meta.log_name,
        map_name=meta.location,
        rel_path=task.rel_path,
        token=log.clock_keys[frames],
        timestamp_us=log.clock.timestamp_us[frames].astype(np.int64),
        type_names=tuple(str(t) for t in type_names),
        type_code=type_code.astype(np.int32).reshape(-1),
        num_enumerated=num_enumerated,
        removed=removed,
    )
