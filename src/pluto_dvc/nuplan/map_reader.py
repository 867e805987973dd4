"""Read nuPlan GeoPackage maps into typed arrays, a lane graph and spatial indexes.

``MapsRoot(root)`` checks a maps root (``nuplan-maps-v1.0.json`` plus ``<location>/<version>/
map.gpkg`` for the four locations); ``MapsRoot(root).load(location)`` returns a :class:`NuPlanMap`,
read once per process per (root, location). A map reads each layer once, reprojects it into the
``meta`` table's ``projectedCoordSystem`` when the layer's CRS differs (real maps may store
lat/lon), and builds shapely STRtrees once.

Conventions: coordinates are UTM metres of the location's zone, headings radians (atan2 of the
driving direction). Every record's rows are sorted by ``fid`` (int64, the GeoPackage feature id);
a missing id is ``NULL_FID`` (-1). Variable-length data is CSR: ``*_offsets`` is ``(K+1,) int64``
and row k owns ``values[offsets[k]:offsets[k+1]]``. Connectors run **from** ``exit_lane_fid``
**to** ``entry_lane_fid``. Every problem with the files raises :class:`DataError`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import pyogrio.errors
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.errors import GEOSException

from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import LOCATIONS, MAP_FILE_NAME, MAPS_VERSION_JSON
from pluto_dvc.nuplan.map_schema import (
    LAYERS,
    META_LAYER,
    NULL_FID,
    PROJECTED_CRS_KEY,
    REQUIRED_LAYER_NAMES,
    MapLayerSchema,
)

_FIX_ROOT = (
    "point data.maps_root / NUPLAN_MAPS_ROOT at the folder that holds "
    f"{MAPS_VERSION_JSON}, or run `pluto-dvc synthesize` to generate the synthetic maps"
)
_FIX_FILE = "re-download the nuPlan maps, or regenerate the synthetic maps (`pluto-dvc synthesize`)"

# =========================================================================================
# records


def _check(cond: bool, record: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{record}: {message}")


def _check_arrays(record: object, n: int, dtypes: dict[str, str]) -> None:
    """Each named field is a numpy array of shape (n,) and the given dtype."""
    cls = type(record).__name__
    for name, dtype in dtypes.items():
        value = getattr(record, name)
        _check(isinstance(value, np.ndarray), cls, f"{name} is not a numpy array")
        _check(value.shape == (n,), cls, f"{name} has shape {value.shape}, expected ({n},)")
        _check(value.dtype == np.dtype(dtype), cls, f"{name} has dtype {value.dtype} != {dtype}")


def _check_csr(record: str, offsets: np.ndarray, n: int, values: np.ndarray) -> None:
    _check(offsets.shape == (n + 1,) and offsets.dtype == np.int64, record, "offsets not (K+1,)")
    _check(offsets[0] == 0 and offsets[-1] == len(values), record, "offsets do not span values")
    _check(bool(np.all(np.diff(offsets) >= 0)), record, "offsets must be non-decreasing")


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
        return cls(points.astype(np.float64), _offsets(counts))

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
        idx = _ranges(self.offsets[rows], counts)
        return Polylines(self.points[idx], _offsets(counts))

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
        return Polylines(np.concatenate([p.points for p in parts]), _offsets(counts))

    def validate(self) -> None:
        _check(self.points.ndim == 2 and self.points.shape[1] == 2, "Polylines", "points not (P,2)")
        _check(self.points.dtype == np.float64, "Polylines", "points must be float64")
        _check_csr("Polylines", self.offsets, len(self), self.points)


class _ByFid:
    """Lookup of rows by fid for records whose ``fid`` is sorted ascending."""

    fid: np.ndarray

    def __len__(self) -> int:
        return int(self.fid.shape[0])

    def rows(self, fids: Iterable[int] | np.ndarray) -> np.ndarray:
        """(N,) int64 row of each fid, -1 where the fid is not in the record."""
        return _rows_of(self.fid, np.asarray(fids, dtype=np.int64).reshape(-1))

    def row(self, fid: int) -> int:
        """The row of one fid; KeyError naming the record when it is absent."""
        r = int(self.rows([fid])[0])
        if r < 0:
            raise KeyError(f"{type(self).__name__} has no fid {fid}")
        return r

    def _validate_fid(self) -> None:
        _check_arrays(self, len(self), {"fid": "int64"})
        _check(
            bool(np.all(np.diff(self.fid) > 0)), type(self).__name__, "fid must be sorted, unique"
        )


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
        return _none_if_nan(self.speed_limit_mps[self.row(fid)])

    def validate(self) -> None:
        self._validate_fid()
        ints = ("lane_fid", "lane_group_fid", "lane_index", "left_boundary_fid")
        _check_arrays(self, len(self), dict.fromkeys((*ints, "right_boundary_fid"), "int64"))
        _check_arrays(self, len(self), {"speed_limit_mps": "float64", "polygon": "object"})
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
        return _none_if_nan(self.speed_limit_mps[self.row(fid)])

    def stop_lines(self, fid: int) -> np.ndarray:
        """(S,) int64 stop polygon fids of one connector."""
        r = self.row(fid)
        return self.stop_line_fids[self.stop_line_offsets[r] : self.stop_line_offsets[r + 1]]

    def validate(self) -> None:
        self._validate_fid()
        ints = ("exit_lane_fid", "entry_lane_fid", "lane_group_connector_fid", "intersection_fid")
        _check_arrays(
            self,
            len(self),
            dict.fromkeys((*ints, "left_boundary_fid", "right_boundary_fid"), "int64"),
        )
        _check_arrays(self, len(self), {"speed_limit_mps": "float64", "polygon": "object"})
        _check_csr("LaneConnectors", self.stop_line_offsets, len(self), self.stop_line_fids)
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
        return self.lane_fids[self.lane_offsets[r] : self.lane_offsets[r + 1]]

    def validate(self) -> None:
        self._validate_fid()
        _check_arrays(self, len(self), {"polygon": "object"})
        _check_csr("Roadblocks", self.lane_offsets, len(self), self.lane_fids)


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
        return self.connector_fids[self.connector_offsets[r] : self.connector_offsets[r + 1]]

    def validate(self) -> None:
        self._validate_fid()
        ints = ("from_lane_group_fid", "to_lane_group_fid", "intersection_fid")
        _check_arrays(self, len(self), {**dict.fromkeys(ints, "int64"), "polygon": "object"})
        _check_csr("RoadblockConnectors", self.connector_offsets, len(self), self.connector_fids)


@dataclass
class PolygonLayer(_ByFid):
    """N polygons of one layer (crosswalks, intersections, carpark areas, walkways).

    fid: (N,) int64. polygon: (N,) object shapely polygons.
    """

    fid: np.ndarray
    polygon: np.ndarray

    def validate(self) -> None:
        self._validate_fid()
        _check_arrays(self, len(self), {"polygon": "object"})


@dataclass
class StopPolygons(_ByFid):
    """N stop polygons. fid, stop_polygon_type_fid: (N,) int64. polygon: (N,) object."""

    fid: np.ndarray
    stop_polygon_type_fid: np.ndarray
    polygon: np.ndarray

    def validate(self) -> None:
        self._validate_fid()
        _check_arrays(self, len(self), {"stop_polygon_type_fid": "int64", "polygon": "object"})


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
        _check_arrays(self, n, {"polygons": "object", "source": "int8", "fid": "int64"})


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
            *_group(exit_row, connectors.fid, k),
            *_group(entry_row, connectors.fid, k),
            *_group(exit_row[both], connectors.entry_lane_fid[both], k, unique=True),
            *_group(entry_row[both], connectors.exit_lane_fid[both], k, unique=True),
        )

    def validate(self, num_lanes: int) -> None:
        for name, values in (
            ("outgoing", self.outgoing_connector_fids),
            ("incoming", self.incoming_connector_fids),
            ("successor", self.successor_lane_fids),
            ("predecessor", self.predecessor_lane_fids),
        ):
            _check_csr(f"LaneGraph.{name}", getattr(self, f"{name}_offsets"), num_lanes, values)


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


@dataclass(frozen=True)
class LaneHit:
    """Result of ``nearest_lane_hit``: ``layer`` (LANE or LANE_CONNECTOR), ``fid``, ``distance``
    (m, point to centreline) and ``heading`` (rad, centreline direction at the closest point)."""

    layer: MapLayer
    fid: int
    distance: float
    heading: float


# =========================================================================================
# the map


@dataclass(eq=False, repr=False)
class NuPlanMap:
    """One location's map as typed records, a lane graph and STRtrees (built once, at init).

    location: map location name. path: the gpkg. crs: the projected CRS every coordinate is in.
    """

    location: str
    path: Path
    crs: CRS
    lanes: Lanes
    lane_connectors: LaneConnectors
    roadblocks: Roadblocks
    roadblock_connectors: RoadblockConnectors
    crosswalks: PolygonLayer
    intersections: PolygonLayer
    stop_polygons: StopPolygons
    carpark_areas: PolygonLayer
    walkways: PolygonLayer
    drivable_area: DrivableArea
    graph: LaneGraph = field(init=False)

    def __post_init__(self) -> None:
        self.graph = LaneGraph.build(self.lanes, self.lane_connectors)
        connector_shape = np.where(
            shapely.is_missing(self.lane_connectors.polygon),
            self.lane_connectors.centerline.linestrings(),
            self.lane_connectors.polygon,
        )
        self._trees: dict[MapLayer, tuple[shapely.STRtree, np.ndarray]] = {
            MapLayer.LANE: (shapely.STRtree(self.lanes.polygon), self.lanes.fid),
            MapLayer.LANE_CONNECTOR: (shapely.STRtree(connector_shape), self.lane_connectors.fid),
        }
        for layer, record in (
            (MapLayer.ROADBLOCK, self.roadblocks),
            (MapLayer.ROADBLOCK_CONNECTOR, self.roadblock_connectors),
            (MapLayer.CROSSWALK, self.crosswalks),
            (MapLayer.INTERSECTION, self.intersections),
            (MapLayer.STOP_POLYGON, self.stop_polygons),
            (MapLayer.CARPARK_AREA, self.carpark_areas),
            (MapLayer.WALKWAY, self.walkways),
        ):
            self._trees[layer] = (shapely.STRtree(record.polygon), record.fid)
        # Lanes then connectors: centrelines for nearest_lane (ties go to the lane).
        self._centerlines = Polylines.concat(
            [self.lanes.centerline, self.lane_connectors.centerline]
        )
        self._centerline_tree = shapely.STRtree(self._centerlines.linestrings())

    def __repr__(self) -> str:
        return (
            f"NuPlanMap({self.location!r}, {len(self.lanes)} lanes, "
            f"{len(self.lane_connectors)} connectors, {str(self.path)!r})"
        )

    @classmethod
    def from_gpkg(cls, path: str | Path, location: str = "") -> NuPlanMap:
        """Read a map GeoPackage (validated); ``location`` defaults to the grandparent folder."""
        path = Path(path)
        return _load_map(path, location or path.parent.parent.name)

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "graph":
                value.validate(len(self.lanes))
            elif hasattr(value, "validate"):
                value.validate()

    # ---------------------------------------------------------------------- lane graph

    def outgoing_connectors(self, lane_fid: int) -> np.ndarray:
        """(n,) int64 connectors leaving the lane (their exit_lane_fid is the lane)."""
        return self._graph_values("outgoing", lane_fid)

    def incoming_connectors(self, lane_fid: int) -> np.ndarray:
        """(n,) int64 connectors arriving at the lane (their entry_lane_fid is the lane)."""
        return self._graph_values("incoming", lane_fid)

    def successor_lanes(self, lane_fid: int) -> np.ndarray:
        """(n,) int64 lanes reachable through one outgoing connector."""
        return self._graph_values("successor", lane_fid)

    def predecessor_lanes(self, lane_fid: int) -> np.ndarray:
        """(n,) int64 lanes that reach this lane through one connector."""
        return self._graph_values("predecessor", lane_fid)

    def _graph_values(self, name: str, lane_fid: int) -> np.ndarray:
        r = self.lanes.row(lane_fid)
        offsets = getattr(self.graph, f"{name}_offsets")
        values = getattr(
            self.graph,
            f"{name}_connector_fids" if name in ("outgoing", "incoming") else f"{name}_lane_fids",
        )
        return values[offsets[r] : offsets[r + 1]]

    # ---------------------------------------------------------------------- spatial queries

    def query_radius(
        self, x: float, y: float, radius: float, layers: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Fids (ascending int64) of the objects whose geometry lies within ``radius`` m of (x, y).

        layers: :class:`MapLayer` names or GeoPackage layer names (default: every MapLayer); the
        result is keyed by the names as given. Lanes, roadblocks and the polygon layers use their
        polygons; lane connectors their polygon (their centreline when they have none).
        """
        point = shapely.Point(x, y)
        out: dict[str, np.ndarray] = {}
        for name in layers if layers is not None else list(MapLayer):
            tree, fids = self._trees[_query_layer(name)]
            idx = tree.query(point, predicate="dwithin", distance=float(radius))
            out[str(name)] = np.sort(fids[idx])
        return out

    def nearest_lane(self, x: float, y: float, heading: float | None = None) -> int | None:
        """Fid of the lane or lane connector whose centreline is nearest to (x, y); see
        :meth:`nearest_lane_hit`. None when the map has no lanes."""
        hit = self.nearest_lane_hit(x, y, heading)
        return None if hit is None else hit.fid

    def nearest_lane_hit(
        self, x: float, y: float, heading: float | None = None, max_search_m: float = 128.0
    ) -> LaneHit | None:
        """The lane or connector whose centreline is nearest to (x, y).

        With a heading (rad), centrelines whose direction at their closest point is within pi/2
        of it are preferred (searching out to ``max_search_m``); the nearest of any direction is
        the fallback. Ties go to lanes, then to the lower fid.
        """
        point = shapely.Point(x, y)
        radius = 2.0
        while True:
            rows = np.sort(self._centerline_tree.query(point, predicate="dwithin", distance=radius))
            if rows.size:
                dist, head = _closest_on_polylines(self._centerlines, rows, x, y)
                ok = np.ones(rows.size, dtype=bool)
                if heading is not None:
                    ok = np.abs(_wrap(head - heading)) <= math.pi / 2
                if ok.any():
                    best = np.flatnonzero(ok)[np.argmin(dist[ok])]
                    return self._hit(int(rows[best]), float(dist[best]), float(head[best]))
            if radius >= max_search_m:
                break
            radius *= 4.0
        rows = np.sort(self._centerline_tree.query_nearest(point))
        if rows.size == 0:
            return None
        dist, head = _closest_on_polylines(self._centerlines, rows, x, y)
        best = int(np.argmin(dist))
        return self._hit(int(rows[best]), float(dist[best]), float(head[best]))

    def _hit(self, row: int, distance: float, heading: float) -> LaneHit:
        k = len(self.lanes)
        if row < k:
            return LaneHit(MapLayer.LANE, int(self.lanes.fid[row]), distance, heading)
        fid = int(self.lane_connectors.fid[row - k])
        return LaneHit(MapLayer.LANE_CONNECTOR, fid, distance, heading)


def _query_layer(name: str) -> MapLayer:
    if name in _LAYER_ALIASES:
        return _LAYER_ALIASES[name]
    try:
        return MapLayer(name)
    except ValueError:
        names = [m.value for m in MapLayer]
        raise ValueError(f"unknown map query layer {name!r}: expected one of {names}") from None


def _closest_on_polylines(
    lines: Polylines, rows: np.ndarray, x: float, y: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) from (x, y) to each polyline of ``rows`` and the heading (rad) of the segment
    holding the closest point. Polylines need at least two points."""
    counts = lines.num_points[rows] - 1
    seg = _ranges(lines.offsets[rows], counts)
    a, b = lines.points[seg], lines.points[seg + 1]
    ab = b - a
    p = np.array([x, y]) - a
    t = np.clip(
        np.einsum("ij,ij->i", p, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1
    )
    d = np.hypot(*(p - t[:, None] * ab).T)
    starts = _offsets(counts)[:-1]
    group = np.repeat(np.arange(rows.size), counts)
    order = np.lexsort((d, group))
    first = order[starts]
    return d[first], np.arctan2(ab[first, 1], ab[first, 0])


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


# =========================================================================================
# maps root


class MapsRoot:
    """A checked maps root: the version json lists the four locations and each gpkg exists.

    root: the folder holding ``nuplan-maps-v1.0.json``. versions: location -> map version.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        json_path = self.root / MAPS_VERSION_JSON
        if not self.root.is_dir():
            raise DataError(f"maps root {self.root} does not exist: {_FIX_ROOT}")
        if not json_path.is_file():
            raise DataError(f"maps root {self.root} has no {MAPS_VERSION_JSON}: {_FIX_ROOT}")
        try:
            metadata = json.loads(json_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{json_path} is not valid json ({e}): {_FIX_ROOT}") from None
        if not isinstance(metadata, dict):
            raise DataError(f"{json_path} must map each location to its version: {_FIX_ROOT}")
        self.versions: dict[str, str] = {}
        for name in LOCATIONS:
            entry = metadata.get(name)
            version = entry.get("version") if isinstance(entry, dict) else None
            if not isinstance(version, str) or not version:
                raise DataError(
                    f"{json_path} lists no version for map location '{name}' (a nuPlan maps root "
                    f'holds all four: {", ".join(LOCATIONS)}; expected {{"{name}": {{"version": '
                    f"...}}}}): {_FIX_ROOT}"
                )
            self.versions[name] = version
            gpkg = self.gpkg_path(name)
            if not gpkg.is_file():
                raise DataError(
                    f"map file {gpkg} of location '{name}' (version {version} in "
                    f"{MAPS_VERSION_JSON}) is missing: {_FIX_ROOT}"
                )

    def gpkg_path(self, location: str) -> Path:
        _check_location(location)
        return self.root / location / self.versions[location] / MAP_FILE_NAME

    def load(self, location: str) -> NuPlanMap:
        """The location's map, read once per process (re-read only if the file changes)."""
        path = self.gpkg_path(location)
        stat = path.stat()
        key = (str(path.resolve()), location, stat.st_mtime_ns, stat.st_size)
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = _load_map(path, location)
            return _CACHE[key]


_CACHE: dict[tuple, NuPlanMap] = {}
_CACHE_LOCK = threading.Lock()


def clear_map_cache() -> None:
    """Forget every map loaded by ``MapsRoot.load`` in this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _check_location(location: str) -> None:
    if location not in LOCATIONS:
        raise DataError(
            f"unknown map location '{location}': expected one of {', '.join(LOCATIONS)} "
            "(check log.map_version or data.map_names)"
        )


# =========================================================================================
# loading


@dataclass
class _Layer:
    """One layer read from disk: rows sorted by fid, schema columns typed, geometry reprojected."""

    fid: np.ndarray
    columns: dict[str, np.ndarray]
    geometry: np.ndarray


class _GpkgReader:
    """Opens one gpkg, checks it and reads layers (each once) into :class:`_Layer`."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise DataError(f"map file {path} is missing: {_FIX_ROOT}")
        _check_sqlite_file(path)
        try:
            names = {str(n) for n in pyogrio.list_layers(str(path))[:, 0]}
        except pyogrio.errors.DataSourceError as e:
            raise DataError(
                f"map file {path} is not a readable GeoPackage ({e}): {_FIX_FILE}"
            ) from None
        missing = [n for n in REQUIRED_LAYER_NAMES if n not in names]
        if missing:
            raise self._missing_layers(missing)
        self.crs = self._projected_crs()
        self._transformers: dict[str, Transformer | None] = {}

    def _missing_layers(self, missing: Sequence[str]) -> DataError:
        return DataError(
            f"map file {self.path} lacks layer(s) {', '.join(missing)} (a nuPlan map holds "
            f"{', '.join(REQUIRED_LAYER_NAMES)} and {META_LAYER}): {_FIX_FILE}"
        )

    def _read_arrow(self, layer: str, **options: str) -> tuple[dict, pa.Table]:
        try:
            return pyogrio.read_arrow(str(self.path), layer=layer, return_fids=True, **options)
        except pyogrio.errors.DataLayerError:
            raise self._missing_layers([layer]) from None
        except pyogrio.errors.DataSourceError as e:
            raise DataError(
                f"map file {self.path}: layer '{layer}' is unreadable ({e}): {_FIX_FILE}"
            ) from None

    def _projected_crs(self) -> CRS:
        # Non-spatial tables may be missing from gpkg_contents: ask GDAL to list every table.
        _, table = self._read_arrow(META_LAYER, LIST_ALL_TABLES="YES")
        if "key" not in table.column_names or "value" not in table.column_names:
            raise DataError(
                f"map file {self.path}: table '{META_LAYER}' lacks key/value columns: {_FIX_FILE}"
            )
        meta = dict(zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True))
        value = meta.get(PROJECTED_CRS_KEY)
        if not value:
            raise DataError(
                f"map file {self.path}: table '{META_LAYER}' has no '{PROJECTED_CRS_KEY}' row: {_FIX_FILE}"
            )
        try:
            return CRS.from_user_input(value)
        except CRSError as e:
            raise DataError(
                f"map file {self.path}: '{PROJECTED_CRS_KEY}' is not a CRS ({e}): {_FIX_FILE}"
            ) from None

    def read(self, name: str) -> _Layer:
        schema = LAYERS[name]
        info, table = self._read_arrow(name)
        fid_col = next(
            (
                c
                for c in (info.get("fid_column"), "OGC_FID", "fid")
                if c and c in table.column_names
            ),
            None,
        )
        if fid_col is None:
            raise DataError(f"map file {self.path}: layer '{name}' has no feature ids: {_FIX_FILE}")
        missing = [c for c in schema.column_names[1:] if c not in table.column_names]
        if missing:
            raise DataError(
                f"map file {self.path}: layer '{name}' lacks column(s) {', '.join(missing)}: {_FIX_FILE}"
            )
        fid = table.column(fid_col).to_numpy().astype(np.int64)
        order = np.argsort(fid, kind="stable")
        columns = {
            c.name: self._typed(schema, c.name, table.column(c.name))[order]
            for c in schema.columns[1:]
        }
        geom_col = info.get("geometry_name") or "wkb_geometry"
        try:
            geometry = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))[
                order
            ]
        except (GEOSException, KeyError) as e:
            raise DataError(
                f"map file {self.path}: layer '{name}' has bad geometries ({e}): {_FIX_FILE}"
            ) from None
        geometry = shapely.force_2d(geometry)
        transformer = self._transformer(info.get("crs"))
        if transformer is not None:
            geometry = shapely.transform(
                geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
            )
        return _Layer(fid[order], columns, geometry)

    def _transformer(self, layer_crs: str | None) -> Transformer | None:
        """None when the layer is already in the projected CRS (or declares none)."""
        if not layer_crs:
            return None
        if layer_crs not in self._transformers:
            try:
                src = CRS.from_user_input(layer_crs)
            except CRSError as e:
                raise DataError(
                    f"map file {self.path}: unknown layer CRS ({e}): {_FIX_FILE}"
                ) from None
            same = src.equals(self.crs, ignore_axis_order=True)
            self._transformers[layer_crs] = (
                None if same else Transformer.from_crs(src, self.crs, always_xy=True)
            )
        return self._transformers[layer_crs]

    def _typed(self, schema: MapLayerSchema, name: str, col: pa.ChunkedArray) -> np.ndarray:
        """A column as int64 (NULL -> -1), float64 (NULL -> NaN) or str (NULL -> "")."""
        column = schema.column(name)
        where = f"map file {self.path}: layer '{schema.name}' column '{name}'"
        if column.type == "str":
            text = pc.fill_null(col.cast(pa.string()), "")
            return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            stripped = pc.utf8_trim_whitespace(col)
            col = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
        try:
            values = col.cast(pa.float64()) if not pa.types.is_integer(col.type) else col
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"{where} is not numeric ({e}): {_FIX_FILE}") from None
        if column.type == "float":
            return pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_integer(values.type):
            ints = pc.fill_null(values, NULL_FID).to_numpy(zero_copy_only=False).astype(np.int64)
            null = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            f = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
            null = np.isnan(f)
            if np.any(f[~null] != np.round(f[~null])):
                raise DataError(f"{where} holds non-integer ids: {_FIX_FILE}")
            ints = np.where(null, NULL_FID, f).astype(np.int64)
        if null.any() and not column.nullable:
            raise DataError(f"{where} is empty in {int(null.sum())} row(s): {_FIX_FILE}")
        return ints


def _check_sqlite_file(path: Path) -> None:
    """The file starts like an SQLite database and is as long as its header says."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(100)
    if not head.startswith(b"SQLite format 3\x00"):
        raise DataError(f"map file {path} is not a GeoPackage (no SQLite header): {_FIX_FILE}")
    if len(head) < 100:
        raise DataError(f"map file {path} is truncated ({size} bytes): {_FIX_FILE}")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    if pages > 0 and head[24:28] == head[92:96] and size < pages * page_size:
        raise DataError(
            f"map file {path} is truncated or corrupt ({size} bytes, its header says "
            f"{pages * page_size}): {_FIX_FILE}"
        )


def _load_map(path: Path, location: str) -> NuPlanMap:
    reader = _GpkgReader(path)
    try:
        return _build_map(reader, location)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, GEOSException) as e:
        raise DataError(f"map file {path} is corrupt ({e}): {_FIX_FILE}") from None


def _build_map(reader: _GpkgReader, location: str) -> NuPlanMap:
    layers = {name: reader.read(name) for name in REQUIRED_LAYER_NAMES}
    baseline, boundaries = layers["baseline_paths"], layers["boundaries"]
    lanes = _lanes(reader.path, layers["lanes_polygons"], baseline, boundaries)
    connectors = _connectors(
        reader.path,
        layers["lane_connectors"],
        baseline,
        boundaries,
        layers["gen_lane_connectors_scaled_width_polygons"],
    )
    groups, group_connectors = layers["lane_groups_polygons"], layers["lane_group_connectors"]
    lane_rows = _rows_of(groups.fid, lanes.lane_group_fid)
    order = np.lexsort((lanes.fid, lanes.lane_index, lane_rows))
    roadblocks = Roadblocks(
        groups.fid,
        groups.geometry,
        *_group(lane_rows[order], lanes.fid[order], len(groups.fid), presorted=True),
    )
    conn_rows = _rows_of(group_connectors.fid, connectors.lane_group_connector_fid)
    roadblock_connectors = RoadblockConnectors(
        group_connectors.fid,
        group_connectors.columns["from_lane_group_fid"],
        group_connectors.columns["to_lane_group_fid"],
        group_connectors.columns["intersection_fid"],
        group_connectors.geometry,
        *_group(conn_rows, connectors.fid, len(group_connectors.fid)),
    )
    carparks = _polygons(layers["carpark_areas"])
    sources = (roadblocks, roadblock_connectors, carparks)
    drivable = DrivableArea(
        np.concatenate([s.polygon for s in sources]),
        np.repeat(np.arange(3, dtype=np.int8), [len(s) for s in sources]),
        np.concatenate([s.fid for s in sources]),
    )
    stops = layers["stop_polygons"]
    nuplan_map = NuPlanMap(
        location=location,
        path=reader.path,
        crs=reader.crs,
        lanes=lanes,
        lane_connectors=connectors,
        roadblocks=roadblocks,
        roadblock_connectors=roadblock_connectors,
        crosswalks=_polygons(layers["crosswalks"]),
        intersections=_polygons(layers["intersections"]),
        stop_polygons=StopPolygons(
            stops.fid, stops.columns["stop_polygon_type_fid"], stops.geometry
        ),
        carpark_areas=carparks,
        walkways=_polygons(layers["walkways"]),
        drivable_area=drivable,
    )
    nuplan_map.validate()
    return nuplan_map


def _polygons(layer: _Layer) -> PolygonLayer:
    return PolygonLayer(layer.fid, layer.geometry)


def _centerlines(baseline: _Layer, key: str, fids: np.ndarray) -> np.ndarray:
    """(K,) object: the baseline path whose ``key`` column is each fid (first by fid), else None."""
    first = _first_per_key(_rows_of(fids, baseline.columns[key]), len(fids))
    out = np.full(len(fids), None, dtype=object)
    out[first >= 0] = baseline.geometry[first[first >= 0]]
    return out


def _boundaries(boundaries: _Layer, fids: np.ndarray, centerline: Polylines) -> Polylines:
    rows = _rows_of(boundaries.fid, fids)
    geoms = np.full(len(fids), None, dtype=object)
    geoms[rows >= 0] = boundaries.geometry[rows[rows >= 0]]
    lines = Polylines.from_geometries(geoms)
    return lines.reversed_where(_runs_backwards(lines, centerline))


def _runs_backwards(lines: Polylines, reference: Polylines) -> np.ndarray:
    """(K,) bool: line k starts nearer the end of reference k than its start."""
    ok = (lines.num_points > 0) & (reference.num_points > 0)
    out = np.zeros(len(lines), dtype=bool)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    ls, le = lines.points[lines.offsets[idx]], lines.points[lines.offsets[idx + 1] - 1]
    rs, re = (
        reference.points[reference.offsets[idx]],
        reference.points[reference.offsets[idx + 1] - 1],
    )
    same = np.hypot(*(ls - rs).T) + np.hypot(*(le - re).T)
    flipped = np.hypot(*(ls - re).T) + np.hypot(*(le - rs).T)
    out[idx] = flipped < same
    return out


def _lanes(path: Path, layer: _Layer, baseline: _Layer, boundaries: _Layer) -> Lanes:
    c = layer.columns
    centre = _centerlines(baseline, "lane_fid", layer.fid)
    bad = layer.fid[shapely.is_missing(centre) | (shapely.get_num_points(centre) < 2)]
    if bad.size:
        raise DataError(
            f"map file {path}: lane(s) {bad[:5].tolist()} of 'lanes_polygons' have no centreline "
            f"in 'baseline_paths' (a row whose lane_fid is the lane): {_FIX_FILE}"
        )
    centerline = Polylines.from_geometries(centre)
    return Lanes(
        fid=layer.fid,
        lane_fid=c["lane_fid"],
        lane_group_fid=c["lane_group_fid"],
        lane_index=c["lane_index"],
        left_boundary_fid=c["left_boundary_fid"],
        right_boundary_fid=c["right_boundary_fid"],
        speed_limit_mps=c["speed_limit_mps"],
        centerline=centerline,
        left_boundary=_boundaries(boundaries, c["left_boundary_fid"], centerline),
        right_boundary=_boundaries(boundaries, c["right_boundary_fid"], centerline),
        polygon=layer.geometry,
    )


def _connectors(
    path: Path, layer: _Layer, baseline: _Layer, boundaries: _Layer, shapes: _Layer
) -> LaneConnectors:
    c = layer.columns
    centre = _centerlines(baseline, "lane_connector_fid", layer.fid)
    centre = np.where(shapely.is_missing(centre), layer.geometry, centre)
    bad = layer.fid[shapely.is_missing(centre) | (shapely.get_num_points(centre) < 2)]
    if bad.size:
        raise DataError(
            f"map file {path}: lane connector(s) {bad[:5].tolist()} have no centreline in "
            f"'baseline_paths' nor a line in 'lane_connectors': {_FIX_FILE}"
        )
    centerline = Polylines.from_geometries(centre)
    owner = _rows_of(layer.fid, shapes.columns["lane_connector_fid"])
    shape_rows = _first_per_key(owner, len(layer.fid))  # the lowest-fid shape per connector
    has = shape_rows >= 0

    def from_shapes(values: np.ndarray, fill: object) -> np.ndarray:
        out = np.full(len(layer.fid), fill, dtype=values.dtype)
        out[has] = values[shape_rows[has]]
        return out

    left_fid = from_shapes(shapes.columns["left_boundary_fid"], NULL_FID)
    right_fid = from_shapes(shapes.columns["right_boundary_fid"], NULL_FID)
    stop_lists = [_parse_fids(path, s) for s in c["traffic_light_stop_line_fids"]]
    return LaneConnectors(
        fid=layer.fid,
        exit_lane_fid=c["exit_lane_fid"],
        entry_lane_fid=c["entry_lane_fid"],
        lane_group_connector_fid=c["lane_group_connector_fid"],
        intersection_fid=c["intersection_fid"],
        speed_limit_mps=c["speed_limit_mps"],
        stop_line_offsets=_offsets(np.array([len(s) for s in stop_lists], dtype=np.int64)),
        stop_line_fids=np.array([f for s in stop_lists for f in s], dtype=np.int64),
        left_boundary_fid=left_fid,
        right_boundary_fid=right_fid,
        centerline=centerline,
        left_boundary=_boundaries(boundaries, left_fid, centerline),
        right_boundary=_boundaries(boundaries, right_fid, centerline),
        polygon=from_shapes(shapes.geometry, None),
    )


def _parse_fids(path: Path, text: str) -> list[int]:
    """``"12,34"`` -> [12, 34]; ``""`` -> []."""
    try:
        return [int(float(p)) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise DataError(
            f"map file {path}: 'lane_connectors.traffic_light_stop_line_fids' value {text!r} is "
            f"not a comma-separated list of ids: {_FIX_FILE}"
        ) from None


# =========================================================================================
# array helpers


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - _offsets(counts)[:-1], counts)
    return shift + np.arange(total, dtype=np.int64)


def _first_per_key(keys: np.ndarray, n: int) -> np.ndarray:
    """(n,) int64: for each key in [0, n) the first position of ``keys`` holding it, else -1."""
    out = np.full(n, -1, dtype=np.int64)
    valid = np.flatnonzero(keys >= 0)
    uniq, first = np.unique(keys[valid], return_index=True)
    out[uniq] = valid[first]
    return out


def _rows_of(sorted_fids: np.ndarray, fids: np.ndarray) -> np.ndarray:
    """Row of each fid in ``sorted_fids`` (ascending), -1 where absent."""
    if sorted_fids.size == 0:
        return np.full(fids.shape, -1, dtype=np.int64)
    idx = np.minimum(np.searchsorted(sorted_fids, fids), sorted_fids.size - 1)
    return np.where(sorted_fids[idx] == fids, idx, -1).astype(np.int64)


def _group(
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
    return _offsets(np.bincount(keys, minlength=n)), values


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _validate_lines(record: object, names: Sequence[str]) -> None:
    n = len(record)  # type: ignore[arg-type]
    for name in names:
        lines: Polylines = getattr(record, name)
        lines.validate()
        _check(len(lines) == n, type(record).__name__, f"{name} has {len(lines)} polylines != {n}")
    centre: Polylines = record.centerline  # type: ignore[attr-defined]
    _check(
        bool(np.all(centre.num_points >= 2)), type(record).__name__, "centerline needs 2+ points"
    )
