"""Per-map arrays of the feature builder, computed once per map per process.

``feature_map(nuplan_map, num_points)`` returns a :class:`FeatureMap` cached on the map object
(weakly keyed, so a freed map frees it). It holds, in global UTM coordinates:

- a polygon table: every lane (rows ``0..n_lanes-1``), lane connector (next ``n_connectors``
  rows) and crosswalk (last rows), with the three polylines resampled by arc length to
  ``num_points + 1`` points, the roadblock id, speed limit and an STRtree for radius queries;
- the lane graph over the *lane-like* rows (lanes and connectors, ``K = n_lanes + n_connectors``):
  successors in the driving direction, dense centrelines with cumulative arc length, an STRtree
  of the centrelines;
- the exterior rings of the lane and connector polygons for the cost-map rasteriser;
- an STRtree of the drivable area (roadblocks, roadblock connectors, carparks);
- the roadblock graph used to reconnect an ego that starts off its route.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.features.geometry import resample_polyline
from pluto_dvc.nuplan.map_reader import NuPlanMap, Polylines

LANE, CONNECTOR, CROSSWALK = 0, 1, 2
RASTER_SIMPLIFY_M = 0.05  # polygon simplification for the cost map (well below a 0.2 m pixel)
DEFAULT_HALF_WIDTH_M = 1.75  # half width given to a connector that has no polygon


@dataclass
class FeatureMap:
    """Everything per map that the per-scenario feature code slices.

    P = all polygons, K = lane-like rows (lanes then connectors), n = num_points + 1.
    kind: (P,) int8 LANE / CONNECTOR / CROSSWALK. fid: (P,) int64 map fid.
    roadblock_id: (P,) int64 lane group (lanes), lane group connector (connectors), -1.
    speed_limit: (P,) float64 m/s, NaN = none.
    polylines: (P, 3, n, 2) float64 centreline, left, right boundary resampled by arc length.
    polygon_tree: STRtree over the P polygon shapes (connectors without polygon: centreline).
    connector_fid_sorted / connector_row_sorted: (C,) lookup of a connector fid -> polygon row.
    exit_row / entry_row: (K,) int64 for connectors the lane rows they leave / enter (-1 else).
    successor_offsets (K+1,) / successors: CSR of the next lane-like rows.
    centerline: K dense polylines (the map's baseline paths); centerline_cum: (pts,) float64 arc
    length of every point from its polyline's start; length: (K,) float64 m.
    centerline_tree: STRtree over the K centrelines.
    ring_points: (Q, 2) float64 exterior-ring vertices of the K lane-like shapes (one ring per
    polygon part, simplified by RASTER_SIMPLIFY_M); ring_offsets: (nr+1,) CSR of rings into
    ring_points; row_rings: (K+1,) CSR of rows into rings.
    drivable_tree: STRtree of the drivable-area polygons.
    roadblock_successors: roadblock / roadblock-connector id -> sorted successor ids.
    """

    num_lanes: int
    num_connectors: int
    kind: np.ndarray
    fid: np.ndarray
    roadblock_id: np.ndarray
    speed_limit: np.ndarray
    polylines: np.ndarray
    polygon_tree: shapely.STRtree
    connector_fid_sorted: np.ndarray
    connector_row_sorted: np.ndarray
    exit_row: np.ndarray
    entry_row: np.ndarray
    successor_offsets: np.ndarray
    successors: np.ndarray
    centerline: Polylines
    centerline_cum: np.ndarray
    length: np.ndarray
    centerline_tree: shapely.STRtree
    ring_points: np.ndarray
    ring_offsets: np.ndarray
    row_rings: np.ndarray
    drivable_tree: shapely.STRtree
    roadblock_successors: dict[int, tuple[int, ...]]

    @property
    def num_lane_like(self) -> int:
        return self.num_lanes + self.num_connectors

    def successors_of(self, row: int) -> np.ndarray:
        return self.successors[self.successor_offsets[row] : self.successor_offsets[row + 1]]

    def centerline_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) dense centreline of a lane-like row and its (N,) cumulative arc length."""
        a, b = self.centerline.offsets[row], self.centerline.offsets[row + 1]
        return self.centerline.points[a:b], self.centerline_cum[a:b]

    def connector_rows(self, connector_fids: np.ndarray) -> np.ndarray:
        """(n,) int64 polygon row of each connector fid, -1 when the map has none."""
        if self.connector_fid_sorted.size == 0:
            return np.full(len(connector_fids), -1, dtype=np.int64)
        pos = np.searchsorted(self.connector_fid_sorted, connector_fids)
        pos = np.minimum(pos, self.connector_fid_sorted.size - 1)
        hit = self.connector_fid_sorted[pos] == connector_fids
        return np.where(hit, self.connector_row_sorted[pos], -1)

    def rings_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exterior rings of lane-like ``rows``: (Q', 2) vertices and (n'+1,) offsets."""
        first, last = self.row_rings[rows], self.row_rings[rows + 1]
        rings = np.concatenate([np.arange(a, b) for a, b in zip(first, last, strict=True)] or [[]])
        rings = rings.astype(np.int64)
        starts, stops = self.ring_offsets[rings], self.ring_offsets[rings + 1]
        counts = stops - starts
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        index = np.repeat(starts - offsets[:-1], counts) + np.arange(int(offsets[-1]))
        return self.ring_points[index], offsets


_CACHE: weakref.WeakKeyDictionary[NuPlanMap, dict[int, FeatureMap]] = weakref.WeakKeyDictionary()


def feature_map(nuplan_map: NuPlanMap, num_points: int) -> FeatureMap:
    """The cached :class:`FeatureMap` of a map for polylines of ``num_points`` (+1) points."""
    per_map = _CACHE.setdefault(nuplan_map, {})
    if num_points not in per_map:
        per_map[num_points] = build_feature_map(nuplan_map, num_points)
    return per_map[num_points]


def build_feature_map(m: NuPlanMap, num_points: int) -> FeatureMap:
    lanes, conns, crosswalks = m.lanes, m.lane_connectors, m.crosswalks
    nl, nc, nx = len(lanes), len(conns), len(crosswalks)
    n = num_points + 1

    polylines = np.zeros((nl + nc + nx, 3, n, 2))
    for offset, record in ((0, lanes), (nl, conns)):
        for k in range(len(record)):
            centre = record.centerline[k]
            polylines[offset + k, 0] = resample_polyline(centre, n)
            for side, lines in ((1, record.left_boundary), (2, record.right_boundary)):
                line = lines[k]
                polylines[offset + k, side] = resample_polyline(line if len(line) else centre, n)
    for k, polygon in enumerate(crosswalks.polygon):
        polylines[nl + nc + k] = _crosswalk_polylines(polygon, n)

    connector_shape = np.where(
        shapely.is_missing(conns.polygon), conns.centerline.linestrings(), conns.polygon
    )
    shapes = np.concatenate([lanes.polygon, connector_shape, crosswalks.polygon])

    lane_rows_of = _lookup(lanes.fid)
    exit_row = np.full(nl + nc, -1, dtype=np.int64)
    entry_row = np.full(nl + nc, -1, dtype=np.int64)
    exit_row[nl:] = lane_rows_of(conns.exit_lane_fid)
    entry_row[nl:] = lane_rows_of(conns.entry_lane_fid)
    # successors: lane -> its outgoing connectors; connector -> its entry lane
    src = np.concatenate([exit_row[nl:], np.arange(nl, nl + nc)])
    dst = np.concatenate([np.arange(nl, nl + nc), entry_row[nl:]])
    ok = (src >= 0) & (dst >= 0)
    order = np.lexsort((dst[ok], src[ok]))
    src, dst = src[ok][order], dst[ok][order]
    successor_offsets = np.zeros(nl + nc + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=nl + nc), out=successor_offsets[1:])

    centerline = Polylines.concat([lanes.centerline, conns.centerline])
    seg = np.hypot(*np.diff(centerline.points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    starts = centerline.offsets[:-1]
    owner = np.repeat(np.arange(nl + nc), centerline.num_points)
    centerline_cum = cum - cum[starts][owner]
    length = centerline_cum[centerline.offsets[1:] - 1]

    raster_shapes = np.where(
        shapely.is_missing(conns.polygon),
        shapely.buffer(conns.centerline.linestrings(), DEFAULT_HALF_WIDTH_M, cap_style="flat"),
        conns.polygon,
    )
    ring_points, ring_offsets, row_rings = _exterior_rings(
        np.concatenate([lanes.polygon, raster_shapes])
    )

    connector_order = np.argsort(conns.fid, kind="stable")
    return FeatureMap(
        num_lanes=nl,
        num_connectors=nc,
        kind=np.repeat(np.array([LANE, CONNECTOR, CROSSWALK], dtype=np.int8), [nl, nc, nx]),
        fid=np.concatenate([lanes.fid, conns.fid, crosswalks.fid]).astype(np.int64),
        roadblock_id=np.concatenate(
            [lanes.lane_group_fid, conns.lane_group_connector_fid, np.full(nx, -1)]
        ).astype(np.int64),
        speed_limit=np.concatenate(
            [lanes.speed_limit_mps, conns.speed_limit_mps, np.full(nx, np.nan)]
        ).astype(np.float64),
        polylines=polylines,
        polygon_tree=shapely.STRtree(shapes),
        connector_fid_sorted=conns.fid[connector_order].astype(np.int64),
        connector_row_sorted=(nl + connector_order).astype(np.int64),
        exit_row=exit_row,
        entry_row=entry_row,
        successor_offsets=successor_offsets,
        successors=dst.astype(np.int64),
        centerline=centerline,
        centerline_cum=centerline_cum,
        length=length,
        centerline_tree=shapely.STRtree(centerline.linestrings()),
        ring_points=ring_points,
        ring_offsets=ring_offsets,
        row_rings=row_rings,
        drivable_tree=shapely.STRtree(m.drivable_area.polygons),
        roadblock_successors=_roadblock_graph(m),
    )


def _lookup(sorted_fids: np.ndarray):
    def rows(fids: np.ndarray) -> np.ndarray:
        if sorted_fids.size == 0:
            return np.full(len(fids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_fids, fids), sorted_fids.size - 1)
        return np.where(sorted_fids[pos] == fids, pos, -1).astype(np.int64)

    return rows


def _crosswalk_polylines(polygon: shapely.Geometry, n: int) -> np.ndarray:
    """(3, n, 2): midline, left and right edge of the polygon's minimum rotated rectangle.

    The two long edges run in the same direction (the rectangle's first long edge); left / right
    are taken relative to that direction.
    """
    rect = shapely.minimum_rotated_rectangle(polygon)
    corners = shapely.get_coordinates(rect)[:4]
    if len(corners) < 4:  # degenerate: a line or a point
        corners = np.concatenate([corners, np.repeat(corners[-1:], 4 - len(corners), axis=0)])
    p0, p1, p2, p3 = corners
    if np.hypot(*(p1 - p0)) >= np.hypot(*(p2 - p1)):
        a, b = np.stack([p0, p1]), np.stack([p3, p2])
    else:
        a, b = np.stack([p1, p2]), np.stack([p0, p3])
    mid = (a + b) / 2
    direction = mid[1] - mid[0]
    offset = a[0] - mid[0]
    a_is_left = direction[0] * offset[1] - direction[1] * offset[0] > 0
    left, right = (a, b) if a_is_left else (b, a)
    return np.stack([resample_polyline(line, n) for line in (mid, left, right)])


def _exterior_rings(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exterior rings of K (multi)polygons, simplified: (Q, 2) vertices, (nr+1,) ring offsets and
    (K+1,) row -> ring offsets (an empty shape has no ring)."""
    k = len(shapes)
    parts, owner = shapely.get_parts(shapely.simplify(shapes, RASTER_SIMPLIFY_M), return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    rings = shapely.get_exterior_ring(parts)
    coords, ring_index = shapely.get_coordinates(rings, return_index=True)
    ring_offsets = np.zeros(len(rings) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ring_index, minlength=len(rings)), out=ring_offsets[1:])
    row_rings = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=k), out=row_rings[1:])
    return coords, ring_offsets, row_rings


def _roadblock_graph(m: NuPlanMap) -> dict[int, tuple[int, ...]]:
    """Roadblock -> roadblock connectors leaving it -> roadblock they enter (and roadblock ->
    roadblock directly, for routes that list no connectors)."""
    lanes, conns = m.lanes, m.lane_connectors
    group_of = dict(zip(lanes.fid.tolist(), lanes.lane_group_fid.tolist(), strict=True))
    graph: dict[int, set[int]] = {}
    for exit_lane, entry_lane, rbc in zip(
        conns.exit_lane_fid.tolist(),
        conns.entry_lane_fid.tolist(),
        conns.lane_group_connector_fid.tolist(),
        strict=True,
    ):
        a, b = group_of.get(exit_lane), group_of.get(entry_lane)
        if a is None or b is None:
            continue
        graph.setdefault(a, set()).update((rbc, b))
        graph.setdefault(rbc, set()).add(b)
    return {key: tuple(sorted(value)) for key, value in sorted(graph.items())}
