"""Scenario enumeration in one log, with the nuPlan devkit's rules (spec/nuplan-format.md §3).

A candidate scenario is one frame (lidar_pc) of a usable scene: scenes are ordered by name and the
first two and last two scenes of a log are never used. An untagged frame has type ``unknown``; a
frame with several tags takes the lexicographically greatest tag surviving the type filter.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from pluto_dvc.nuplan.log_records import LogArrays
from pluto_dvc.nuplan.log_schema import UNKNOWN_SCENARIO_TYPE, tokens_hex

EDGE_SCENES_DROPPED = 2  # scenes dropped at each end of a log (ordered by name)


@dataclass
class ScenarioCandidates:
    """Candidate scenarios of one log, in frame order.

    token_hex: (M,) '<U16' lidar_pc token as 16 lowercase hex characters (the scenario token).
    frame_index: (M,) int32 frame of the log (row of ``LogArrays.clock``).
    scenario_type: (M,) str (numpy ``U``) scenario type; ``unknown`` for untagged frames.
    timestamp_us: (M,) int64 lidar_pc timestamp, microseconds.
    """

    token_hex: np.ndarray
    frame_index: np.ndarray
    scenario_type: np.ndarray
    timestamp_us: np.ndarray

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def validate(self) -> None:
        m = len(self)
        for name in ("token_hex", "frame_index", "scenario_type", "timestamp_us"):
            value = getattr(self, name)
            if value.shape != (m,):
                raise ValueError(f"ScenarioCandidates: {name} has shape {value.shape}, not ({m},)")
        expected = {"token_hex": "<U16", "frame_index": "int32", "timestamp_us": "int64"}
        for name, dtype in expected.items():
            if getattr(self, name).dtype != np.dtype(dtype):
                raise ValueError(f"ScenarioCandidates: {name} must be {dtype}")
        if self.scenario_type.dtype.kind != "U":
            raise ValueError("ScenarioCandidates: scenario_type must be a str (U) array")


def usable_scenes(num_scenes: int) -> np.ndarray:
    """(S,) bool: scenes (ordered by name) whose frames may be scenarios."""
    usable = np.ones(num_scenes, dtype=bool)
    usable[:EDGE_SCENES_DROPPED] = False
    usable[max(num_scenes - EDGE_SCENES_DROPPED, 0) :] = False
    return usable


def enumerate_scenarios(
    log: LogArrays, scenario_types: Collection[str] | None = None
) -> ScenarioCandidates:
    """Candidate scenarios of ``log``; ``scenario_types`` (None = all) filters by type.

    With a filter, a tagged frame is a candidate only if one of its tags is in the filter, and an
    untagged frame only if ``unknown`` is.
    """
    n = log.num_frames
    scene = log.clock.scene_index
    usable = usable_scenes(len(log.scenes))
    in_usable_scene = np.zeros(n, dtype=bool)
    has_scene = scene >= 0
    in_usable_scene[has_scene] = usable[scene[has_scene]]

    frames, types = log.tags.frame_index, log.tags.type
    tagged = np.zeros(n, dtype=bool)
    tagged[frames] = True
    if scenario_types is not None:
        wanted = np.array(sorted(set(scenario_types)), dtype=str)
        keep = np.isin(types, wanted)
        frames, types = frames[keep], types[keep]
    # Sort by (frame, type): the last tag of each frame is its lexicographically greatest one.
    order = np.lexsort((types, frames))
    frames, types = frames[order], types[order]
    last = np.ones(len(frames), dtype=bool)
    last[:-1] = frames[1:] != frames[:-1]

    width = max(len(UNKNOWN_SCENARIO_TYPE), types.dtype.itemsize // 4)
    frame_type = np.full(n, UNKNOWN_SCENARIO_TYPE, dtype=f"U{width}")
    frame_type[frames[last]] = types[last]
    typed = np.zeros(n, dtype=bool)
    typed[frames[last]] = True
    unknown_ok = scenario_types is None or UNKNOWN_SCENARIO_TYPE in scenario_types
    candidate = in_usable_scene & (typed | (~tagged & unknown_ok))

    index = np.flatnonzero(candidate)
    return ScenarioCandidates(
        token_hex=tokens_hex(log.clock.token[index]),
        frame_index=index.astype(np.int32),
        scenario_type=frame_type[index],
        timestamp_us=log.clock.timestamp_us[index].astype(np.int64),
    )
