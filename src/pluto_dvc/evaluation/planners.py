"""Planners scored by the open-loop evaluation: the baselines and the PLUTO model.

A planner turns a batch of queried frames into one trajectory per frame (rear-axle poses in the
frame's ego frame at ``times_s`` after the present) and, optionally, scored candidates for the
pictures. Every planner is scored by the same code (``open_loop``).

- :class:`ExpertPlanner`: replays the logged future (the devkit's log-future planner; OLS 1).
- :class:`ConstantVelocityPlanner`: keeps the present speed and heading.
- :class:`ReferenceLinePlanner`: follows the best reference line (nearest start point, then the
  longest) at the present speed.
- :class:`ModelPlanner` (``model_planner.py``): PLUTO's top-1 trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PRESENT = "current_state"
SPEED = 3  # current_state[3]: longitudinal speed, m/s


@dataclass
class FrameBatch:
    """N queried frames.

    samples: N flat feature dicts (``LogFeatureBuilder.build`` / cache samples).
    expert_future: (N, F, 3) float64 the logged ego future (rear axle, ego frame of each frame)
        at ``expert_times_s`` (F,) seconds; only the expert planner reads it.
    """

    samples: Sequence[dict[str, np.ndarray]]
    expert_future: np.ndarray
    expert_times_s: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Plan:
    """Trajectories of N frames.

    times_s: (F,) float64 seconds after the present, increasing, > 0.
    poses: (N, F, 3) float64 rear-axle x, y (m), heading (rad) in each frame's ego frame.
    candidates: (N, C, F, 3) float64 the best-scored candidates (C may be 0) and
    candidate_scores: (N, C) float64 their probabilities (softmax over the valid candidates).
    """

    times_s: np.ndarray
    poses: np.ndarray
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None


class Planner(Protocol):
    name: str

    def plan(self, frames: FrameBatch) -> Plan: ...


def _times(horizon_s: float, step_s: float) -> np.ndarray:
    n = int(round(horizon_s / step_s))
    return step_s * np.arange(1, n + 1, dtype=np.float64)


class ExpertPlanner:
    """The logged future: a sanity check of the scoring (ADE 0, OLS 1)."""

    name = "expert"

    def plan(self, frames: FrameBatch) -> Plan:
        return Plan(np.asarray(frames.expert_times_s, np.float64), frames.expert_future)


@dataclass
class ConstantVelocityPlanner:
    """Extrapolates the present longitudinal speed along the present heading."""

    horizon_s: float = 8.0
    step_s: float = 0.1
    name: str = "constant_velocity"

    def plan(self, frames: FrameBatch) -> Plan:
        t = _times(self.horizon_s, self.step_s)
        speed = np.array([float(s[PRESENT][SPEED]) for s in frames.samples])
        poses = np.zeros((len(frames), len(t), 3))
        poses[..., 0] = speed[:, None] * t[None, :]
        return Plan(t, poses)


def best_reference_line(sample: dict[str, np.ndarray]) -> int:
    """Row of the reference line a rule-based follower takes: the nearest first point (the lines
    start at the ego's projection on their first lane), ties within 0.5 m broken by the longest
    line, then the lowest row; -1 when the sample has no valid line."""
    valid = sample.get("reference_line.valid_mask")
    if valid is None or not valid.any():
        return -1
    position = sample["reference_line.position"].astype(np.float64)
    rows = np.flatnonzero(valid.any(axis=1))
    first = np.array([position[r, np.argmax(valid[r])] for r in rows])
    dist = np.hypot(first[:, 0], first[:, 1])
    near = rows[dist <= dist.min() + 0.5]
    lengths = valid[near].sum(axis=1)
    return int(near[np.argmax(lengths)])


def follow_line(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """(F, 3) poses at arc lengths ``distance`` (F,) along the polyline ``points`` (L, 2) from its
    first point; beyond the end the last segment is extended straight."""
    seg = np.diff(points, axis=0)
    length = np.hypot(seg[:, 0], seg[:, 1])
    keep = length > 1e-6
    seg, length = seg[keep], length[keep]
    if len(seg) == 0:  # a degenerate line: stay at its point, heading 0
        out = np.zeros((len(distance), 3))
        out[:, :2] = points[0]
        return out
    start = np.concatenate([[0.0], np.cumsum(length)[:-1]])
    i = np.clip(np.searchsorted(start, distance, side="right") - 1, 0, len(seg) - 1)
    along = distance - start[i]  # may run past the last segment: extended straight
    direction = seg[i] / length[i, None]
    base = points[:-1][keep][i]
    xy = base + direction * along[:, None]
    heading = np.arctan2(direction[:, 1], direction[:, 0])
    return np.concatenate([xy, heading[:, None]], axis=1)


@dataclass
class ReferenceLinePlanner:
    """Drives along the best reference line at the present speed (constant velocity otherwise)."""

    horizon_s: float = 8.0
    step_s: float = 0.1
    name: str = "constant_velocity_reference_line"

    def plan(self, frames: FrameBatch) -> Plan:
        t = _times(self.horizon_s, self.step_s)
        poses = np.zeros((len(frames), len(t), 3))
        for n, sample in enumerate(frames.samples):
            speed = max(float(sample[PRESENT][SPEED]), 0.0)
            row = best_reference_line(sample)
            if row < 0:
                poses[n, :, 0] = speed * t
                continue
            valid = sample["reference_line.valid_mask"][row]
            points = sample["reference_line.position"][row][valid].astype(np.float64)
            poses[n] = follow_line(points, speed * t)
        return Plan(t, poses)
