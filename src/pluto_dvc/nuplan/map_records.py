"""Typed array records of a nuPlan map (one location), as ``map_reader.NuPlanMap`` holds them.

Conventions: coordinates are UTM metres of the location's zone, headings radians (atan2 of the
driving direction). Every record's rows are sorted by ``fid`` (int64, the GeoPackage feature id);
a missing id is ``NULL_FID`` (-1). Variable-length data is CSR (``pluto_dvc.arrays``):
``*_offsets`` is ``(K+1,) int64`` and row k owns ``values[offsets[k]:offsets[k+1]]``. Connectors
run **from** ``exit_lane_fid`` **to** ``entry_lane_fid``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np
import shapely

from pluto_dvc.arrays import (
    check,
    check_fields,
    check_offsets,
    check_sorted_unique,
    csr_row,
    lookup_sorted,
    offsets_from_counts,
    ranges,
)


@dataclass
class Polylines:
    """K polylines flattened into one point array.

    points: (P, 2) float64 x, y in UTM metres. offsets: (K+1,) int64; polyline k is
    ``points[offsets[k]:offsets[k+1]]`` (in the driving direction for lanes; may be empty).
    """

    points: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_geometries(cls, geoms: Sequence | np.ndarray) -> Polylines:
        """From K shapely lines (None = empty polyline); coordinates of multi-parts are chained."""
        geoms = np.asarray(geoms, dtype=object).reshape(-1)
        points, index = shapely.get_coordinates(geoms, return_index=True)
        counts = np.bincount(index, minlength=len(geoms))
        return cls(points.astype(np.float64), offsets_from_counts(counts))

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.points[self.offsets[k] : self.offsets[k + 1]]

    @property
    def num_points(self) -> np.ndarray:
        """(K,) int64 points per polyline."""
        return np.diff(self.offsets)

    def linestrings(self) -> np.ndarray:
        """(K,) object shapely LineStrings (None for a polyline of fewer than two points)."""
        out = np.full(len(self), None, dtype=object)
        ok = self.num_points >= 2
        if ok.any():
            sub = self.take(np.flatnonzero(ok))
            row = np.repeat(np.arange(len(sub)), sub.num_points)
            out[ok] = shapely.linestrings(sub.points, indices=row)
        return out

    def take(self, rows: np.ndarray) -> Polylines:
        """The polylines of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.num_points[rows]
        idx = ranges(self.offsets[rows], counts)
        return Polylines(self.points[idx], offsets_from_counts(counts))

    def reversed_where(self, flip: np.ndarray) -> Polylines:
        """A copy with polyline k reversed where ``flip[k]`` (bool (K,))."""
        counts = self.num_points
        row = np.repeat(np.arange(len(self)), counts)
        i = np.arange(self.points.shape[0])
        rev = self.offsets[row] + self.offsets[row + 1] - 1 - i
        return Polylines(self.points[np.where(flip[row], rev, i)], self.offsets.copy())

    @staticmethod
    def concat(parts: Sequence[Polylines]) -> Polylines:
        counts = np.concatenate([p.num_points for p in parts])
        return Polylines(np.concatenate([p.points for p in parts]), offsets_from_counts(counts))

    def validate(self) -> None:
        check(self.points.ndim == 2 and self.points.shape[1] == 2, "Polylines", "points not (P,2)")
        check(self.points.dtype == np.float64, "Polylines", "points must be float64")
        check_offsets("Polylines", "offsets", self.offsets, len(self), len(self.points))


class _ByFid:
    """Lookup of rows by fid for records whose ``fid`` is sorted ascending."""

    fid: np.ndarray

    def __len__(self) -> int:
        return int(self.fid.shape[0])

    def rows(self, fids: Iterable[int] | np.ndarray) -> np.ndarray:
        """(N,) int64 row of each fid, -1 where the fid is not in the record."""
        return lookup_sorted(self.fid, np.asarray(fids, dtype=np.int64).reshape(-1))

    def row(self, fid: int) -> int:
        """The row of one fid; KeyError naming the record when it is absent."""
        r = int(self.rows([fid])[0])
        if r < 0:
            raise KeyError(f"{type(self).__name__} has no fid {fid}")
        return r

    def _validate_fid(self) -> None:
        check_fields(self, len(self), {"fid": "int64"})
        check_sorted_unique(type(self).__name__, "fid", self.fid)


@dataclass
class Lanes(_ByFid):
    """K lanes from ``lanes_polygons`` (rows sorted by fid).

    fid: (K,) int64 lane id. lane_fid: (K,) int64 the layer's ``lane_fid`` column.
    lane_group_fid: (K,) int64 roadblock. lane_index: (K,) int64 (0 = leftmost).
    left_boundary_fid, right_boundary_fid: (K,) int64 ``boundaries`` ids (-1 = none).
    speed_limit_mps: (K,) float64 m/s, NaN = no limit.
    centerline: K polylines from ``baseline_paths`` in the driving direction (~0.25 m spacing).
    left_boundary, right_boundary: K polylines from ``boundaries``, oriented in the driving
        direction (a stored line running the other way is reversed); empty when missing.
    polygon: (K,) object shapely polygons.
    """

    fid: np.ndarray
    lane_fid: np.ndarray
    lane_group_fid: np.ndarray
    lane_index: np.ndarray
    left_boundary_fid: np.ndarray
    right_boundary_fid: np.ndarray
    speed_limit_mps: np.ndarray
    centerline: Polylines
    left_boundary: Polylines
    right_boundary: Polylines
    polygon: np.ndarray

    def speed_limit(self, fid: int) -> float | None:
        """Speed limit of one lane in m/s, None when it has none."""
        return none_if_nan(self.speed_limit_mps[self.row(fid)])

    def validate(self) -> None:
        self._validate_fid()
        ints = ("lane_fid", "lane_group_fid", "lane_index", "left_boundary_fid")
        check_fields(self, len(self), dict.fromkeys((*ints, "right_boundary_fid"), "int64"))
        check_fields(self, len(self), {"speed_limit_mps": "float64", "polygon": "object"})
        _validate_lines(self, ("centerline", "left_boundary", "right_boundary"))


@dataclass
class LaneConnectors(_ByFid):
    """K lane connectors from ``lane_connectors`` (rows sorted by fid).

    fid: (K,) int64. exit_lane_fid: (K,) int64 the lane it starts from. entry_lane_fid: (K,)
    int64 the lane it leads to. lane_group_connector_fid: (K,) int64 roadblock connector.
    intersection_fid: (K,) int64 (-1 = none). speed_limit_mps: (K,) float64 m/s, NaN = none.
    stop_line_offsets: (K+1,) int64 CSR into stop_line_fids: (S,) int64, the stop polygons of
        ``traffic_light_stop_line_fids``.
    left_boundary_fid, right_boundary_fid: (K,) int64 from
        ``gen_lane_connectors_scaled_width_polygons`` (-1 = none).
    centerline: K polylines from ``baseline_paths`` (else the layer's own line), driving direction.
    left_boundary, right_boundary: K polylines oriented like the centerline (empty when missing).
    polygon: (K,) object shapely polygons (None when the map has no polygon for the connector).
    """

    fid: np.ndarray
    exit_lane_fid: np.ndarray
    entry_lane_fid: np.ndarray
    lane_group_connector_fid: np.ndarray
    intersection_fid: np.ndarray
    speed_limit_mps: np.ndarray
    stop_line_offsets: np.ndarray
    stop_line_fids: np.ndarray
    left_boundary_fid: np.ndarray
    right_boundary_fid: np.ndarray
    centerline: Polylines
    left_boundary: Polylines
    right_boundary: Polylines
    polygon: np.ndarray

    def speed_limit(self, fid: int) -> float | None:
        """Speed limit of one connector in m/s, None when it has none."""
        return none_if_nan(self.speed_limit_mps[self.row(fid)])

    def stop_lines(self, fid: int) -> np.ndarray:
        """(S,) int64 stop polygon fids of one connector."""
        r = self.row(fid)
        return csr_row(self.stop_line_offsets, self.stop_line_fids, r)

    def validate(self) -> None:
        self._validate_fid()
        ints = ("exit_lane_fid", "entry_lane_fid", "lane_group_connector_fid", "intersection_fid")
        check_fields(
            self,
            len(self),
            dict.fromkeys((*ints, "left_boundary_fid", "right_boundary_fid"), "int64"),
        )
        check_fields(self, len(self), {"speed_limit_mps": "float64", "polygon": "object"})
        check_offsets(
            "LaneConnectors", "offsets", self.stop_line_offsets, len(self), len(self.stop_line_fids)
        )
        _validate_lines(self, ("centerline", "left_boundary", "right_boundary"))


@dataclass
class Roadblocks(_ByFid):
    """R roadblocks (``lane_groups_polygons``) and their lanes.

    fid: (R,) int64. polygon: (R,) object shapely polygons.
    lane_offsets: (R+1,) int64 CSR into lane_fids: (L,) int64, each roadblock's lanes ordered by
        lane_index (left to right).
    """

    fid: np.ndarray
    polygon: np.ndarray
    lane_offsets: np.ndarray
    lane_fids: np.ndarray

    def lanes_of(self, fid: int) -> np.ndarray:
        r = self.row(fid)
        return csr_row(self.lane_offsets, self.lane_fids, r)

    def validate(self) -> None:
        self._validate_fid()
        check_fields(self, len(self), {"polygon": "object"})
        check_offsets("Roadblocks", "offsets", self.lane_offsets, len(self), len(self.lane_fids))


@dataclass
class RoadblockConnectors(_ByFid):
    """R roadblock connectors (``lane_group_connectors``) and their lane connectors.

    fid, from_lane_group_fid, to_lane_group_fid: (R,) int64. intersection_fid: (R,) int64
    (-1 = none). polygon: (R,) object. connector_offsets: (R+1,) int64 CSR into
    connector_fids: (C,) int64 lane connector fids (ascending).
    """

    fid: np.ndarray
    from_lane_group_fid: np.ndarray
    to_lane_group_fid: np.ndarray
    intersection_fid: np.ndarray
    polygon: np.ndarray
    connector_offsets: np.ndarray
    connector_fids: np.ndarray

    def connectors_of(self, fid: int) -> np.ndarray:
        r = self.row(fid)
        return csr_row(self.connector_offsets, self.connector_fids, r)

    def validate(self) -> None:
        self._validate_fid()
        ints = ("from_lane_group_fid", "to_lane_group_fid", "intersection_fid")
        check_fields(self, len(self), {**dict.fromkeys(ints, "int64"), "polygon": "object"})
        check_offsets(
            "RoadblockConnectors",
            "offsets",
            self.connector_offsets,
            len(self),
            len(self.connector_fids),
        )


@dataclass
class PolygonLayer(_ByFid):
    """N polygons of one layer (crosswalks, intersections, carpark areas, walkways).

    fid: (N,) int64. polygon: (N,) object shapely polygons.
    """

    fid: np.ndarray
    polygon: np.ndarray

    def validate(self) -> None:
        self._validate_fid()
        check_fields(self, len(self), {"polygon": "object"})


@dataclass
class StopPolygons(_ByFid):
    """N stop polygons. fid, stop_polygon_type_fid: (N,) int64. polygon: (N,) object."""

    fid: np.ndarray
    stop_polygon_type_fid: np.ndarray
    polygon: np.ndarray

    def validate(self) -> None:
        self._validate_fid()
        check_fields(self, len(self), {"stop_polygon_type_fid": "int64", "polygon": "object"})


DRIVABLE_SOURCES = ("lane_groups_polygons", "lane_group_connectors", "carpark_areas")


@dataclass
class DrivableArea:
    """The drivable area: roadblocks, roadblock connectors and carpark areas.

    polygons: (D,) object shapely polygons. source: (D,) int8 index into DRIVABLE_SOURCES.
    fid: (D,) int64 id in its source layer. ``union`` is their union (computed on first use).
    """

    polygons: np.ndarray
    source: np.ndarray
    fid: np.ndarray

    @cached_property
    def union(self) -> shapely.Geometry:
        return shapely.union_all(self.polygons)

    def validate(self) -> None:
        n = int(self.polygons.shape[0])
        check_fields(self, n, {"polygons": "object", "source": "int8", "fid": "int64"})


@dataclass
class LaneGraph:
    """Connectivity per lane, rows aligned with :class:`Lanes` (K lanes).

    outgoing_offsets / outgoing_connector_fids: connectors whose exit_lane_fid is the lane.
    incoming_offsets / incoming_connector_fids: connectors whose entry_lane_fid is the lane.
    successor_offsets / successor_lane_fids: entry lanes of the outgoing connectors (unique).
    predecessor_offsets / predecessor_lane_fids: exit lanes of the incoming connectors (unique).
    Offsets are (K+1,) int64; values int64, ascending within a lane.
    """

    outgoing_offsets: np.ndarray
    outgoing_connector_fids: np.ndarray
    incoming_offsets: np.ndarray
    incoming_connector_fids: np.ndarray
    successor_offsets: np.ndarray
    successor_lane_fids: np.ndarray
    predecessor_offsets: np.ndarray
    predecessor_lane_fids: np.ndarray

    @classmethod
    def build(cls, lanes: Lanes, connectors: LaneConnectors) -> LaneGraph:
        k = len(lanes)
        exit_row, entry_row = (
            lanes.rows(connectors.exit_lane_fid),
            lanes.rows(connectors.entry_lane_fid),
        )
        both = (exit_row >= 0) & (entry_row >= 0)
        return cls(
            *group_rows(exit_row, connectors.fid, k),
            *group_rows(entry_row, connectors.fid, k),
            *group_rows(exit_row[both], connectors.entry_lane_fid[both], k, unique=True),
            *group_rows(entry_row[both], connectors.exit_lane_fid[both], k, unique=True),
        )

    def validate(self, num_lanes: int) -> None:
        for name, values in (
            ("outgoing", self.outgoing_connector_fids),
            ("incoming", self.incoming_connector_fids),
            ("successor", self.successor_lane_fids),
            ("predecessor", self.predecessor_lane_fids),
        ):
            check_offsets(
                f"LaneGraph.{name}",
                "offsets",
                getattr(self, f"{name}_offsets"),
                num_lanes,
                len(values),
            )


class MapLayer(StrEnum):
    """Layers of ``NuPlanMap.query_radius`` (the GeoPackage layer names are accepted too)."""

    LANE = "lane"
    LANE_CONNECTOR = "lane_connector"
    ROADBLOCK = "roadblock"
    ROADBLOCK_CONNECTOR = "roadblock_connector"
    CROSSWALK = "crosswalk"
    INTERSECTION = "intersection"
    STOP_POLYGON = "stop_polygon"
    CARPARK_AREA = "carpark_area"
    WALKWAY = "walkway"


_LAYER_ALIASES = {
    "lanes_polygons": MapLayer.LANE,
    "lane_connectors": MapLayer.LANE_CONNECTOR,
    "lane_groups_polygons": MapLayer.ROADBLOCK,
    "lane_group_connectors": MapLayer.ROADBLOCK_CONNECTOR,
    "crosswalks": MapLayer.CROSSWALK,
    "intersections": MapLayer.INTERSECTION,
    "stop_polygons": MapLayer.STOP_POLYGON,
    "carpark_areas": MapLayer.CARPARK_AREA,
    "walkways": MapLayer.WALKWAY,
}


def layer_of(name: str) -> MapLayer:
    if name in _LAYER_ALIASES:
        return _LAYER_ALIASES[name]
    try:
        return MapLayer(name)
    except ValueError:
        names = [m.value for m in MapLayer]
        raise ValueError(f"unknown map query layer {name!r}: expected one of {names}") from None


@dataclass(frozen=True)
class LaneHit:
    """Result of ``nearest_lane_hit``: ``layer`` (LANE or LANE_CONNECTOR), ``fid``, ``distance``
    (m, point to centreline) and ``heading`` (rad, centreline direction at the closest point)."""

    layer: MapLayer
    fid: int
    distance: float
    heading: float


# ------------------------------------------------------------------------ array helpers


def first_per_key(keys: np.ndarray, n: int) -> np.ndarray:
    """(n,) int64: for each key in [0, n) the first position of ``keys`` holding it, else -1."""
    out = np.full(n, -1, dtype=np.int64)
    valid = np.flatnonzero(keys >= 0)
    uniq, first = np.unique(keys[valid], return_index=True)
    out[uniq] = valid[first]
    return out


def group_rows(
    keys: np.ndarray, values: np.ndarray, n: int, unique: bool = False, presorted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of ``values`` grouped by ``keys`` (rows in [0, n); negative keys dropped).

    Values are ascending within a group unless ``presorted`` (then their given order is kept).
    """
    keep = keys >= 0
    keys, values = keys[keep].astype(np.int64), values[keep].astype(np.int64)
    if unique:
        pairs = np.unique(np.stack([keys, values], axis=1), axis=0)
        keys, values = pairs[:, 0], pairs[:, 1]
    elif not presorted:
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
    else:
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
    return offsets_from_counts(np.bincount(keys, minlength=n)), values


def none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _validate_lines(record: object, names: Sequence[str]) -> None:
    n = len(record)  # type: ignore[arg-type]
    for name in names:
        lines: Polylines = getattr(record, name)
        lines.validate()
        check(len(lines) == n, type(record).__name__, f"{name} has {len(lines)} polylines != {n}")
    centre: Polylines = record.centerline  # type: ignore[attr-defined]
    check(bool(np.all(centre.num_points >= 2)), type(record).__name__, "centerline needs 2+ points")
