"""Reference lines: route-following centrelines that start at the ego.

Starts: the on-route lanes / connectors whose centreline passes within 3 m of the ego with a
heading error below pi/2 (``route.nearby_lanes``). From each start, a depth-first search follows
successors (lane -> outgoing connector -> entry lane) that are on the route until the path covers
``reference_line_length_m`` beyond the ego's projection or ends. Each path's dense centreline is
cut at the ego projection and resampled every metre (L = length / 1 m points). Lines that repeat
another (all common points within ``DUPLICATE_M``) are dropped, keeping the longer; when some line
reaches half the length, shorter lines are dropped too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pluto_dvc.features.geometry import project_onto_polylines, rotation
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.records import ReferenceLines
from pluto_dvc.features.route import NearbyLanes

STEP_M = 1.0
DUPLICATE_M = 0.5
MAX_PATHS = 64  # safety cap on the depth-first search


@dataclass
class LinePath:
    """The lane-like rows a reference line follows and the arc length (m, along the line) at
    which each row starts (negative for the start row, which begins behind the ego)."""

    rows: list[int]
    row_start: np.ndarray


def _search_paths(
    fmap: FeatureMap, start: int, s0: float, on_route: np.ndarray, need: float
) -> list[list[int]]:
    out: list[list[int]] = []
    stack = [([start], float(fmap.length[start]) - s0)]
    while stack and len(out) < MAX_PATHS:
        path, covered = stack.pop()
        if covered >= need:
            out.append(path)
            continue
        nxt = [int(r) for r in fmap.successors_of(path[-1]) if on_route[r] and r not in path]
        if not nxt:
            out.append(path)
            continue
        for r in reversed(nxt):
            stack.append((path + [r], covered + float(fmap.length[r])))
    return out


def _sample_path(
    fmap: FeatureMap, path: list[int], s0: float, num_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, 2) global points every STEP_M from the projection, (L,) valid mask, and the (len(path),)
    arc length (from the projection) at which each row starts."""
    points, cums = [], []
    offset = 0.0
    row_start = np.zeros(len(path))
    for k, row in enumerate(path):
        pts, cum = fmap.centerline_of(row)
        if k:  # the first point of a successor repeats the previous end: skip it
            pts, cum = pts[1:], cum[1:]
        row_start[k] = offset - s0
        points.append(pts)
        cums.append(cum + offset)
        offset += float(fmap.length[row])
    pts = np.concatenate(points)
    cum = np.maximum.accumulate(np.concatenate(cums))
    s = s0 + STEP_M * np.arange(num_points)
    xy = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=-1)
    return xy, s <= cum[-1] + 1e-9, row_start


def build_reference_lines(
    fmap: FeatureMap,
    ego_lanes: NearbyLanes,
    on_route: np.ndarray,
    origin: np.ndarray,
    angle: float,
    length_m: float,
    ego_future: np.ndarray,
) -> tuple[ReferenceLines, list[LinePath]]:
    """Reference lines in the ego frame and the lane-like rows each follows.

    on_route: (K,) bool per lane-like row. ego_future: (K', 2) ego-frame points (1 s apart)
    projected on every line. R may be 0 (the caller decides whether that is an error).
    """
    num_points = max(2, int(round(length_m / STEP_M)))
    lines, masks, paths = [], [], []
    for row, s0 in zip(ego_lanes.rows.tolist(), ego_lanes.arc.tolist(), strict=True):
        if not on_route[row]:
            continue
        for path in _search_paths(fmap, row, s0, on_route, length_m):
            xy, valid, row_start = _sample_path(fmap, path, s0, num_points)
            lines.append(xy)
            masks.append(valid)
            paths.append(LinePath(path, row_start))
    keep = _select_lines(
        np.array(lines).reshape(-1, num_points, 2), np.array(masks).reshape(-1, num_points)
    )
    r = len(keep)
    position = np.zeros((r, num_points, 2))
    valid = np.zeros((r, num_points), dtype=bool)
    if r:
        position = (np.stack([lines[k] for k in keep]) - origin) @ rotation(angle)
        valid = np.stack([masks[k] for k in keep])
    vector = np.zeros_like(position)
    vector[:, :-1] = np.diff(position, axis=1)
    vector[:, -1] = vector[:, -2]
    last = valid.sum(axis=1) - 1  # the last valid point repeats the vector before it
    rows = np.arange(r)
    has = last >= 1
    vector[rows[has], last[has]] = vector[rows[has], last[has] - 1]
    vector *= valid[..., None]
    position *= valid[..., None]
    orientation = np.arctan2(vector[..., 1], vector[..., 0]) * valid
    s, d = project_onto_polylines(ego_future, position, valid)
    projection = np.stack([s, d], axis=-1) if r else np.zeros((0, len(ego_future), 2))
    features = ReferenceLines(
        position=position.astype(np.float32),
        vector=vector.astype(np.float32),
        orientation=orientation.astype(np.float32),
        valid_mask=valid,
        future_projection=projection.astype(np.float32),
    )
    return features, [paths[k] for k in keep]


def _select_lines(lines: np.ndarray, valid: np.ndarray) -> list[int]:
    """Indices of the lines kept: near-duplicates and (when a long one exists) short ones out."""
    n = len(lines)
    if n == 0:
        return []
    length = valid.sum(axis=1)
    long_enough = lines.shape[1] // 2
    candidates = list(range(n))
    if length.max() >= long_enough:
        candidates = [i for i in candidates if length[i] >= long_enough]
    # longer lines first (stable), so that a duplicate keeps the longest
    candidates.sort(key=lambda i: -length[i])
    kept: list[int] = []
    for i in candidates:
        duplicate = False
        for j in kept:
            common = valid[i] & valid[j]
            if common.any():
                gap = np.hypot(*(lines[i, common] - lines[j, common]).T).max()
                duplicate = gap < DUPLICATE_M
            if duplicate:
                break
        if not duplicate:
            kept.append(i)
    return sorted(kept)
