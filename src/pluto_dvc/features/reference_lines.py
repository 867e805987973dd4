"""Reference lines: route-following centrelines that start at the ego (PLUTO's rules).

1. Starts (``start_lanes``): every on-route lane or connector whose shape meets the global
   axis-aligned box of +-``START_BOX_M`` around the ego *centre*, longer than
   ``MIN_START_LENGTH_M``, whose centreline direction at the vertex nearest the rear axle is within
   pi/2 of the ego heading. A start that is the successor of another start is merged into it
   (dropped: the predecessor's paths run through it).
2. Paths (``candidate_paths``): from each start a depth-first search follows on-route successors
   (lane -> outgoing connector -> entry lane), at most ``SEARCH_DEPTH`` rows, until the rows cover
   more than ``length_m`` beyond the rear axle's projection on the start row or no successor is
   on the route.
3. Trim: the rear axle is projected on the *whole* path; the line runs from that projection (so it
   never starts behind the ego) for at most ``length_m`` and is resampled every ``STEP_M``.
4. Selection (``select_lines``): when some but not all trimmed lines are longer than
   ``LONG_FRACTION`` x ``length_m``, the shorter ones are dropped; a line whose common points with
   a kept line all differ by less than ``DUPLICATE_M`` (|dx| + |dy|, PLUTO's measure) is a
   duplicate. Ours: of two duplicates the longer is kept (PLUTO keeps the first found).

``future_projection`` stores the lateral offset *signed* (left positive); PLUTO stores the
unsigned distance. The target line is the one with the smallest magnitude either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.features.geometry import (
    project_onto_polylines,
    project_point,
    rotation,
    wrap_angle,
)
from pluto_dvc.features.map_index import CONNECTOR, FeatureMap
from pluto_dvc.features.records import ReferenceLines

STEP_M = 1.0
DUPLICATE_M = 0.5
LONG_FRACTION = 0.8
START_BOX_M = 3.0
MIN_START_LENGTH_M = 2.0
SEARCH_DEPTH = 15
MAX_PATHS = 64  # safety cap on the depth-first search per start


@dataclass
class CandidatePath:
    """One route-following path from a start lane.

    rows: lane-like rows followed. points: (N, 2) float64 global dense centreline (the map's
    baseline vertices); cum: (N,) float64 arc length. start_s: arc length of the rear axle's
    projection (where the reference line starts); length: the trimmed length (m) from there,
    at most the requested length.
    """

    rows: list[int]
    points: np.ndarray
    cum: np.ndarray
    start_s: float
    length: float


def direction_near(fmap: FeatureMap, row: int, xy: np.ndarray) -> float:
    """Heading (rad) of a row's centreline at its vertex nearest to ``xy``."""
    pts, _ = fmap.centerline_of(row)
    k = int(np.argmin(((pts - xy) ** 2).sum(axis=1)))
    a, b = (k - 1, k) if k == len(pts) - 1 else (k, k + 1)
    d = pts[b] - pts[a]
    return float(np.arctan2(d[1], d[0]))


def start_lanes(
    fmap: FeatureMap,
    on_route: np.ndarray,
    rear_axle: np.ndarray,
    heading: float,
    center: np.ndarray,
) -> np.ndarray:
    """(n,) int64 start rows: connectors first, then lanes, each by map fid (rule 1)."""
    x, y = float(center[0]), float(center[1])
    box = shapely.box(x - START_BOX_M, y - START_BOX_M, x + START_BOX_M, y + START_BOX_M)
    rows = fmap.polygon_tree.query(box, predicate="intersects")
    rows = np.unique(rows[rows < fmap.num_lane_like]).astype(np.int64)
    rows = rows[on_route[rows] & (fmap.length[rows] > MIN_START_LENGTH_M)]
    ok = [
        abs(float(wrap_angle(direction_near(fmap, int(r), rear_axle) - heading))) < np.pi / 2
        for r in rows
    ]
    rows = rows[np.asarray(ok, dtype=bool)] if len(rows) else rows
    merged = {int(s) for r in rows for s in fmap.successors_of(int(r))}
    rows = np.array([r for r in rows.tolist() if r not in merged], dtype=np.int64)
    order = np.lexsort((fmap.fid[rows], fmap.kind[rows] != CONNECTOR))
    return rows[order]


def _dense_path(fmap: FeatureMap, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) dense centreline of consecutive rows (a successor's repeated first vertex dropped)
    and its (N,) arc length."""
    parts = []
    for k, row in enumerate(rows):
        pts, _ = fmap.centerline_of(row)
        parts.append(pts[1:] if k else pts)
    pts = np.concatenate(parts)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    return pts, cum


def candidate_paths(
    fmap: FeatureMap,
    starts: np.ndarray,
    on_route: np.ndarray,
    rear_axle: np.ndarray,
    length_m: float,
) -> list[CandidatePath]:
    """Every path of rule 2 from every start, trimmed by rule 3, in search order."""
    out: list[CandidatePath] = []
    for start in starts.tolist():
        s0, _ = project_point(rear_axle, *fmap.centerline_of(start))
        stack = [([start], float(fmap.length[start]) - s0)]
        found: list[list[int]] = []
        while stack and len(found) < MAX_PATHS:
            path, covered = stack.pop()
            nxt = [int(r) for r in fmap.successors_of(path[-1]) if on_route[r] and r not in path]
            if not nxt or len(path) == SEARCH_DEPTH or covered > length_m:
                found.append(path)
                continue
            for r in reversed(nxt):
                stack.append((path + [r], covered + float(fmap.length[r])))
        for path in found:
            points, cum = _dense_path(fmap, path)
            s_ego, _ = project_point(rear_axle, points, cum)
            s_ego = min(max(s_ego, 0.0), float(cum[-1]))
            end = min(s_ego + length_m, float(cum[-1]))
            out.append(CandidatePath(path, points, cum, s_ego, end - s_ego))
    return out


def select_lines(
    paths: list[CandidatePath], lines: np.ndarray, valid: np.ndarray, length_m: float
) -> list[int]:
    """Indices (ascending) of the paths kept by rule 4. lines / valid: (n, L, 2) / (n, L)."""
    n = len(paths)
    if n == 0:
        return []
    length = np.array([p.length for p in paths])
    candidates = list(range(n))
    long = length > LONG_FRACTION * length_m
    if long.any() and not long.all():
        candidates = [i for i in candidates if long[i]]
    candidates.sort(key=lambda i: -length[i])  # stable: a duplicate keeps the longer line
    kept: list[int] = []
    for i in candidates:
        duplicate = False
        for j in kept:
            common = valid[i] & valid[j]
            if common.any():
                gap = np.abs(lines[i, common] - lines[j, common]).sum(axis=-1).max()
                duplicate = gap < DUPLICATE_M
            if duplicate:
                break
        if not duplicate:
            kept.append(i)
    return sorted(kept)


def build_reference_lines(
    paths: list[CandidatePath],
    origin: np.ndarray,
    angle: float,
    length_m: float,
    ego_future: np.ndarray,
) -> tuple[ReferenceLines, list[CandidatePath]]:
    """Reference lines in the ego frame and the paths they follow.

    ego_future: (K, 2) ego-frame points (1 s apart) projected on every line. R may be 0 (the
    caller decides whether that is an error).
    """
    num_points = max(2, int(round(length_m / STEP_M)))
    lines = np.zeros((len(paths), num_points, 2))
    masks = np.zeros((len(paths), num_points), dtype=bool)
    steps = STEP_M * np.arange(num_points)
    for k, p in enumerate(paths):
        s = p.start_s + steps
        lines[k, :, 0] = np.interp(s, p.cum, p.points[:, 0])
        lines[k, :, 1] = np.interp(s, p.cum, p.points[:, 1])
        masks[k] = steps <= p.length + 1e-9
    keep = select_lines(paths, lines, masks, length_m)
    r = len(keep)
    position = (lines[keep] - origin) @ rotation(angle) if r else np.zeros((0, num_points, 2))
    valid = masks[keep]
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
