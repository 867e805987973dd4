"""One location's nuPlan map: typed records, a lane graph, spatial queries; and the maps root.

``MapsRoot(root)`` checks a maps root (``nuplan-maps-v1.0.json`` plus ``<location>/<version>/
map.gpkg`` for the four locations); ``MapsRoot(root).load(location)`` returns a :class:`NuPlanMap`,
read once per process per (root, location). A map builds its lane graph and shapely STRtrees
once. The records are in ``map_records`` (conventions there), the GeoPackage reading in
``map_gpkg``; every problem with the files raises :class:`DataError`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS
from shapely.errors import GEOSException

from pluto_dvc.arrays import csr_row, offsets_from_counts, ranges
from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import LOCATIONS, MAP_FILE_NAME, MAPS_VERSION_JSON
from pluto_dvc.nuplan.map_gpkg import FIX_MAPS_ROOT, corrupt_map, read_map_records
from pluto_dvc.nuplan.map_records import (  # noqa: F401  (re-exported: the map's record types)
    DRIVABLE_SOURCES,
    DrivableArea,
    LaneConnectors,
    LaneGraph,
    LaneHit,
    Lanes,
    MapLayer,
    PolygonLayer,
    Polylines,
    RoadblockConnectors,
    Roadblocks,
    StopPolygons,
    layer_of,
)


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
        return csr_row(offsets, values, r)

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
            tree, fids = self._trees[layer_of(name)]
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


def _closest_on_polylines(
    lines: Polylines, rows: np.ndarray, x: float, y: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) from (x, y) to each polyline of ``rows`` and the heading (rad) of the segment
    holding the closest point. Polylines need at least two points."""
    counts = lines.num_points[rows] - 1
    seg = ranges(lines.offsets[rows], counts)
    a, b = lines.points[seg], lines.points[seg + 1]
    ab = b - a
    p = np.array([x, y]) - a
    t = np.clip(
        np.einsum("ij,ij->i", p, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1
    )
    d = np.hypot(*(p - t[:, None] * ab).T)
    starts = offsets_from_counts(counts)[:-1]
    group = np.repeat(np.arange(rows.size), counts)
    order = np.lexsort((d, group))
    first = order[starts]
    return d[first], np.arctan2(ab[first, 1], ab[first, 0])


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


class MapsRoot:
    """A checked maps root: the version json lists the four locations and each gpkg exists.

    root: the folder holding ``nuplan-maps-v1.0.json``. versions: location -> map version.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        json_path = self.root / MAPS_VERSION_JSON
        if not self.root.is_dir():
            raise DataError(f"maps root {self.root} does not exist: {FIX_MAPS_ROOT}")
        if not json_path.is_file():
            raise DataError(f"maps root {self.root} has no {MAPS_VERSION_JSON}: {FIX_MAPS_ROOT}")
        try:
            metadata = json.loads(json_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{json_path} is not valid json ({e}): {FIX_MAPS_ROOT}") from None
        if not isinstance(metadata, dict):
            raise DataError(f"{json_path} must map each location to its version: {FIX_MAPS_ROOT}")
        self.versions: dict[str, str] = {}
        for name in LOCATIONS:
            entry = metadata.get(name)
            version = entry.get("version") if isinstance(entry, dict) else None
            if not isinstance(version, str) or not version:
                raise DataError(
                    f"{json_path} lists no version for map location '{name}' (a nuPlan maps root "
                    f'holds all four: {", ".join(LOCATIONS)}; expected {{"{name}": {{"version": '
                    f"...}}}}): {FIX_MAPS_ROOT}"
                )
            self.versions[name] = version
            gpkg = self.gpkg_path(name)
            if not gpkg.is_file():
                raise DataError(
                    f"map file {gpkg} of location '{name}' (version {version} in "
                    f"{MAPS_VERSION_JSON}) is missing: {FIX_MAPS_ROOT}"
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


def _load_map(path: Path, location: str) -> NuPlanMap:
    records = read_map_records(path)
    try:
        nuplan_map = NuPlanMap(location=location, path=path, **records)
    except GEOSException as e:
        raise corrupt_map(path, e) from None
    nuplan_map.validate()
    return nuplan_map
