"""The ego route: lanes near the ego, route membership, and the correction of a route the ego has
left (or never joined).

A scene's route is its ``roadblock_ids``: roadblock (lane group) ids and, in real nuPlan, the
roadblock-connector ids between them. A lane is on the route when its roadblock is; a lane
connector when its roadblock connector is, or when the roadblocks of both its lanes are (for
routes that list roadblocks only).

Correction: when none of the lanes the ego is on (within ``NEAR_LANE_M`` with a heading error
below pi/2) is on the route, the roadblock of the nearest one is added, together with the
shortest chain of roadblocks / roadblock connectors (breadth first, at most
``MAX_CORRECTION_HOPS`` hops) that leads from it to a roadblock of the route.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.features.geometry import wrap_angle
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.records import PolygonType
from pluto_dvc.nuplan.log_records import Scenes

NEAR_LANE_M = 3.0
MAX_CORRECTION_HOPS = 8


@dataclass
class NearbyLanes:
    """Lane-like rows near a point, nearest first: rows (n,) int64, arc (n,) float64 arc length
    of the projection along the dense centreline, distance (n,) m, heading_error (n,) rad."""

    rows: np.ndarray
    arc: np.ndarray
    distance: np.ndarray
    heading_error: np.ndarray


def nearby_lanes(
    fmap: FeatureMap, xy: np.ndarray, heading: float, radius: float = NEAR_LANE_M
) -> NearbyLanes:
    """Lanes and connectors whose centreline passes within ``radius`` of ``xy`` with a direction
    (at the closest point) within pi/2 of ``heading``; nearest first, ties by row."""
    rows = fmap.centerline_tree.query(
        shapely.Point(float(xy[0]), float(xy[1])), predicate="dwithin", distance=radius
    )
    rows = np.sort(rows).astype(np.int64)
    if rows.size == 0:
        empty = np.zeros(0)
        return NearbyLanes(rows, empty, empty, empty)
    off = fmap.centerline.offsets
    counts = off[rows + 1] - off[rows] - 1
    starts = np.cumsum(counts) - counts
    seg = np.repeat(off[rows] - starts, counts) + np.arange(int(counts.sum()))
    a, b = fmap.centerline.points[seg], fmap.centerline.points[seg + 1]
    ab = b - a
    ap = xy - a
    seg_len2 = np.maximum((ab * ab).sum(1), 1e-12)
    t = np.clip((ap * ab).sum(1) / seg_len2, 0.0, 1.0)
    dist = np.hypot(*(ap - t[:, None] * ab).T)
    group = np.repeat(np.arange(rows.size), counts)
    order = np.lexsort((dist, group))
    best = order[starts]  # nearest segment of each row
    arc = fmap.centerline_cum[seg[best]] + t[best] * np.sqrt(seg_len2[best])
    error = np.abs(wrap_angle(np.arctan2(ab[best, 1], ab[best, 0]) - heading))
    ok = error < np.pi / 2
    rows, arc, dist, error = rows[ok], arc[ok], dist[best][ok], error[ok]
    order = np.lexsort((rows, dist))
    return NearbyLanes(rows[order], arc[order], dist[order], error[order])


class RouteBook:
    """Routes of one log's scenes, corrected per ego position and cached."""

    def __init__(self, fmap: FeatureMap, scenes: Scenes):
        self.fmap = fmap
        self.scenes = scenes
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._lane_like: dict[bytes, np.ndarray] = {}

    def route(self, scene: int, ego_lanes: NearbyLanes) -> np.ndarray:
        """(r,) int64 sorted unique route ids of ``scene``, corrected for the ego's lanes."""
        base = np.unique(self.scenes.roadblocks(scene)) if scene >= 0 else np.zeros(0, np.int64)
        if ego_lanes.rows.size == 0:
            return base
        on = self.lane_on_route(base, ego_lanes.rows)
        if on.any():
            return base
        start = int(self.fmap.roadblock_id[ego_lanes.rows[0]])
        key = (scene, start)
        if key not in self._cache:
            chain = _chain_to_route(self.fmap.roadblock_successors, start, set(base.tolist()))
            self._cache[key] = np.unique(np.concatenate([base, np.asarray(chain, np.int64)]))
        return self._cache[key]

    def lane_like_on_route(self, route: np.ndarray) -> np.ndarray:
        """(K,) bool for every lane-like row (lanes, connectors), cached per route."""
        key = route.tobytes()
        if key not in self._lane_like:
            if len(self._lane_like) > 64:
                self._lane_like.clear()
            rows = np.arange(self.fmap.num_lane_like)
            self._lane_like[key] = self.lane_on_route(route, rows)
        return self._lane_like[key]

    def lane_on_route(self, route: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(n,) bool for polygon rows (lanes, connectors; crosswalks are never on the route)."""
        fmap = self.fmap
        on = np.isin(fmap.roadblock_id[rows], route) & (fmap.roadblock_id[rows] >= 0)
        is_conn = fmap.kind[rows] == PolygonType.LANE_CONNECTOR
        if is_conn.any():
            conn = rows[is_conn]
            ends = np.stack([fmap.exit_row[conn], fmap.entry_row[conn]])
            ok = (ends >= 0).all(axis=0)
            both = np.isin(fmap.roadblock_id[np.where(ends >= 0, ends, 0)], route).all(axis=0)
            on[is_conn] |= ok & both
        return on


def _chain_to_route(graph: dict[int, tuple[int, ...]], start: int, route: set[int]) -> list[int]:
    """``start`` and the ids of the shortest forward chain from it to a route id (the route id
    excluded); just ``[start]`` when no route id is reachable within MAX_CORRECTION_HOPS."""
    parent: dict[int, int | None] = {start: None}
    queue = deque([(start, 0)])
    while queue:
        node, depth = queue.popleft()
        if node in route and node != start:
            chain = []
            step = parent[node]
            while step is not None:
                chain.append(step)
                step = parent[step]
            return chain[::-1]
        if depth >= MAX_CORRECTION_HOPS:
            continue
        for nxt in graph.get(node, ()):
            if nxt not in parent:
                parent[nxt] = node
                queue.append((nxt, depth + 1))
    return [start]
