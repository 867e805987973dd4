"""Pass 2, per log: the quality filters that need the ego trajectory, the token set or the map.

Each filter gives a pass mask over the log's surviving candidates; the caller applies them in the
devkit's order (displacement, start, stop, token set, route) and counts what each removed.

The *window* of a scenario is its devkit extraction window (``nuplan_scenario_mapping.yaml``):
tagged types start 3 s before the scenario frame and last 15 s, ``unknown`` starts at it and lasts
20 s, both sampled at 10 Hz (subsample ratio 0.5; timestamps inclusive at both ends).
- Motion filters (displacement, start/stop speed) judge the ego over
  ``get_ego_future_trajectory(0, duration)``: the devkit samples it at the scenario's 0.1 s
  interval from the 20 Hz log, i.e. frames first+2, first+4, ..., last (``sample_indices_with_
  time_horizon`` gives row offsets 2, 4, ..., 2k). Displacement sums the steps between those
  samples (frame ``first`` itself is not part of it); the speed detectors start at the speed of
  frame ``first`` (iteration 0) and then visit those samples. With ``expand_scenarios`` the devkit
  cannot run them (a single-frame scenario has no horizon: it raises); here they judge the same
  window as without expansion.
- The token-set filter uses the scenario's tokens: the window's sampled frames, or the scenario
  frame alone when expanded. The route filter uses the ego at the scenario's first frame (window
  start, or the scenario frame when expanded) and the route of the scenario frame's scene.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pluto_dvc.selection.config import load_token_set
from pluto_dvc.selection.logread import EgoMotion, SelectionLog, read_selection_log

QUALITY_FILTERS = (
    "ego_displacement_minimum_m",
    "ego_start_speed_threshold",
    "ego_stop_speed_threshold",
    "token_set",
    "ego_route_radius",
)
TAGGED_WINDOW_US = (-3_000_000, 15_000_000)  # (offset, duration) of tagged scenario types
UNKNOWN_WINDOW_US = (0, 20_000_000)  # (offset, duration) of 'unknown' scenarios
WINDOW_STEP = 2  # subsample ratio 0.5 of the 20 Hz clock
REAR_AXLE_TO_CENTER_M = 1.461  # Pacifica: half length (4.049 + 1.127) / 2 - rear length 1.127


@dataclass(frozen=True)
class QualitySettings:
    """The quality-filter part of ``ScenarioFilter`` (None = not applied) and the maps root."""

    ego_displacement_minimum_m: float | None
    ego_start_speed_threshold: float | None
    ego_stop_speed_threshold: float | None
    speed_noise_tolerance: float
    token_set_path: str | None
    fraction_in_token_set_threshold: float | None
    ego_route_radius: float | None
    expand_scenarios: bool
    maps_root: str


@dataclass(frozen=True)
class QualityTask:
    """Pass-2 work of one log: its surviving candidates in table order.

    token: (m,) uint64 scenario tokens; tagged: (m,) bool, the type is not ``unknown``.
    """

    path: str
    token: np.ndarray
    tagged: np.ndarray
    settings: QualitySettings


@dataclass
class Windows:
    """Frame ranges of m scenarios in one log (all (m,) int64 frame indices).

    frame: the scenario frame. first: window start (iteration 0). last: last sampled frame
    (first + 2k). end: one past the last frame inside the window (exclusive bound).
    """

    frame: np.ndarray
    first: np.ndarray
    last: np.ndarray
    end: np.ndarray


def scenario_windows(timestamp_us: np.ndarray, frame: np.ndarray, tagged: np.ndarray) -> Windows:
    """Extraction windows of scenarios at ``frame`` on a clock of (N,) int64 timestamps."""
    offset = np.where(tagged, TAGGED_WINDOW_US[0], UNKNOWN_WINDOW_US[0])
    duration = np.where(tagged, TAGGED_WINDOW_US[1], UNKNOWN_WINDOW_US[1])
    start_us = timestamp_us[frame] + offset
    first = np.searchsorted(timestamp_us, start_us, side="left")
    end = np.searchsorted(timestamp_us, start_us + duration, side="right")
    empty = end <= first  # the log is too short: the window is the scenario frame alone
    first = np.where(empty, frame, first)
    end = np.where(empty, frame + 1, end)
    last = first + WINDOW_STEP * ((end - 1 - first) // WINDOW_STEP)
    return Windows(frame=frame, first=first, last=last, end=end)


def sampled_frames(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """(m,) first and last frame of the ego future trajectory the devkit's motion filters see:
    frames first+2, first+4, ..., last (empty, first > last, when the window has one sample)."""
    return windows.first + WINDOW_STEP, windows.last


def displacement(ego: EgoMotion, windows: Windows) -> np.ndarray:
    """(m,) float64 path length (m) of the ego centre over the sampled frames first+2, first+4,
    ..., last (0 when there are fewer than two).

    devkit ``_is_non_stationary``: the sum of the distances between consecutive ``state.center``
    (rear axle moved 1.461 m forward along the heading) of ``get_ego_future_trajectory(0,
    duration)``, which samples every 0.1 s (every second 20 Hz frame) from two frames after the
    first.
    """
    cx = ego.x + REAR_AXLE_TO_CENTER_M * np.cos(ego.heading)
    cy = ego.y + REAR_AXLE_TO_CENTER_M * np.sin(ego.heading)
    n = len(cx)
    cum = np.zeros(n)  # cum[k]: path length over frames k mod 2, k mod 2 + 2, ..., k
    if n > WINDOW_STEP:
        step = np.hypot(cx[WINDOW_STEP:] - cx[:-WINDOW_STEP], cy[WINDOW_STEP:] - cy[:-WINDOW_STEP])
        for parity in range(WINDOW_STEP):
            cum[parity + WINDOW_STEP :: WINDOW_STEP] = np.cumsum(step[parity::WINDOW_STEP])
    a, b = sampled_frames(windows)
    return np.where(b > a, cum[np.minimum(b, n - 1)] - cum[np.minimum(a, n - 1)], 0.0)


def speed_edges(
    speed: np.ndarray, windows: Windows, threshold: float, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(m,) bool rising and falling speed edges through ``threshold`` (devkit
    ``_check_for_speed_edge``).

    Two detectors start at the speed of frame ``first``; ``high`` follows new maxima, ``low`` new
    minima. When ``high > threshold >= low`` and ``high - low > tolerance``, a new maximum makes a
    rising edge (``low`` jumps to ``high``), a new minimum a falling edge (``high`` jumps to
    ``low``). The sampled frames first+2, first+4, ..., last are visited in order. Between edges the detectors are the
    running max / min since the last edge, so each round finds every scenario's next edge at once
    with cumulative max / min over a (scenarios x frames) block.
    """
    m = len(windows.first)
    rising = np.zeros(m, dtype=bool)
    falling = np.zeros(m, dtype=bool)
    steps = np.maximum(windows.last - windows.first, 0) // WINDOW_STEP  # samples after `first`
    width = int(steps.max(initial=0)) + 1
    chunk = max(1, _BLOCK_ELEMENTS // width)
    for lo in range(0, m, chunk):
        rows = slice(lo, lo + chunk)
        r, f = _edges_block(speed, windows.first[rows], steps[rows], threshold, tolerance)
        rising[rows], falling[rows] = r, f
    return rising, falling


_BLOCK_ELEMENTS = 1 << 21  # frames x scenarios per block of speed_edges (16 MB of float64)


def _edges_block(
    speed: np.ndarray, first: np.ndarray, steps: np.ndarray, threshold: float, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    c = len(first)
    cols = np.arange(int(steps.max(initial=0)) + 1)
    v = speed[np.minimum(first[:, None] + WINDOW_STEP * cols, len(speed) - 1)]
    valid = cols <= steps[:, None]
    rising = np.zeros(c, dtype=bool)
    falling = np.zeros(c, dtype=bool)
    restart = np.zeros(c, dtype=np.int64)  # column of the last edge (detectors reset there)
    active = np.arange(c)
    while active.size:
        vs = v[active]
        live = valid[active] & (cols >= restart[active, None])
        high = np.maximum.accumulate(np.where(live, vs, -np.inf), axis=1)
        low = np.minimum.accumulate(np.where(live, vs, np.inf), axis=1)
        edge = live & (high > threshold) & (threshold >= low) & (high - low > tolerance)
        found = edge.any(axis=1)
        at = edge.argmax(axis=1)[found]
        active = active[found]
        up = vs[found, at] == high[found, at]  # the edge came with a new maximum
        rising[active[up]] = True
        falling[active[~up]] = True
        restart[active] = at
        active = active[~(rising[active] & falling[active])]
    return rising, falling


def token_set_fraction(
    in_set: np.ndarray, windows: Windows, expand: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(m,) int64 scenario tokens in the set and (m,) int64 scenario tokens.

    ``in_set``: (N,) bool per frame. A scenario's tokens are its window's sampled frames
    (first, first+2, ..., last), or only its frame when ``expand``.
    """
    if expand:
        return in_set[windows.frame].astype(np.int64), np.ones(len(windows.frame), np.int64)
    count = (windows.last - windows.first) // WINDOW_STEP + 1
    hits = np.zeros(len(windows.first), dtype=np.int64)
    for parity in range(WINDOW_STEP):
        sub = in_set[parity::WINDOW_STEP].astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(sub)])
        mine = windows.first % WINDOW_STEP == parity
        lo = windows.first[mine] // WINDOW_STEP
        hi = windows.last[mine] // WINDOW_STEP + 1
        hits[mine] = cum[hi] - cum[lo]
    return hits, count


def passes_token_set(hits: np.ndarray, count: np.ndarray, threshold: float) -> np.ndarray:
    """devkit ``filter_fraction_lidarpc_tokens_in_set``: fraction in set > threshold; at a
    threshold of 1, every token in the set (the devkit compares the scenario's token set with the
    whole set for equality there, which no multi-token set can pass; we take the evident intent)."""
    if threshold >= 1.0:
        return hits == count
    return hits / count > threshold


@functools.lru_cache(maxsize=4)
def _token_set(path: str, mtime_ns: int) -> np.ndarray:
    del mtime_ns  # part of the cache key only
    return load_token_set(path)


def _in_token_set(log: SelectionLog, path: str) -> np.ndarray:
    keys = _token_set(path, os.stat(path).st_mtime_ns)
    return np.isin(log.clock_keys, keys)


def check_log(task: QualityTask) -> dict[str, np.ndarray]:
    """{filter name: (m,) bool pass} for every enabled quality filter (a top-level function)."""
    s = task.settings
    log = read_selection_log(Path(task.path), with_ego=True)
    assert log.ego is not None
    frame = _frames_of(log, task.token)
    windows = scenario_windows(log.clock.timestamp_us, frame, task.tagged)
    out: dict[str, np.ndarray] = {}
    if s.ego_displacement_minimum_m is not None:
        out["ego_displacement_minimum_m"] = (
            displacement(log.ego, windows) >= s.ego_displacement_minimum_m
        )
    speed = log.ego.speed
    for name, threshold, which in (
        ("ego_start_speed_threshold", s.ego_start_speed_threshold, 0),
        ("ego_stop_speed_threshold", s.ego_stop_speed_threshold, 1),
    ):
        if threshold is not None:
            out[name] = speed_edges(speed, windows, threshold, s.speed_noise_tolerance)[which]
    if s.token_set_path is not None and s.fraction_in_token_set_threshold is not None:
        hits, count = token_set_fraction(
            _in_token_set(log, s.token_set_path), windows, s.expand_scenarios
        )
        out["token_set"] = passes_token_set(hits, count, s.fraction_in_token_set_threshold)
    if s.ego_route_radius is not None:
        from pluto_dvc.selection.routes import ego_has_route

        origin = windows.frame if s.expand_scenarios else windows.first
        out["ego_route_radius"] = ego_has_route(log, origin, frame, s.ego_route_radius, s.maps_root)
    return out


def _frames_of(log: SelectionLog, token: np.ndarray) -> np.ndarray:
    """(m,) int64 frame of each scenario token (they come from this log's clock)."""
    order = np.argsort(log.clock_keys, kind="stable")
    pos = np.searchsorted(log.clock_keys[order], token)
    frame = order[np.minimum(pos, len(order) - 1)]
    if not np.array_equal(log.clock_keys[frame], token):
        raise RuntimeError(f"{log.meta.path}: a selected token is not a frame of the log")
    return frame.astype(np.int64)
