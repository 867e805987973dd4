"""The nuPlan GeoPackage map schema as data: layers, the columns the pipeline needs, geometry types.

Every vector layer has an integer ``fid`` (the GeoPackage feature id, which other layers and the
logs refer to) and one geometry per feature. Column types are ``int`` (int64 on disk; a *nullable*
int may be NULL, read back as :data:`NULL_FID`), ``float`` (float64; NaN is written as NULL and
read back as NaN) and ``str``. The non-spatial ``meta`` table holds key/value rows, among them
:data:`PROJECTED_CRS_KEY` (the location's UTM CRS as ``"EPSG:<code>"`` or WKT).

Real nuPlan maps may store more columns, other numeric types (ids as floats or strings) and
lat/lon coordinates: readers take only the columns listed here and coerce them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["int", "float", "str"]
GeometryType = Literal["Polygon", "LineString", "Point"]

NULL_FID = -1  # in-memory value of a NULL / NaN / empty id
META_LAYER = "meta"
PROJECTED_CRS_KEY = "projectedCoordSystem"


@dataclass(frozen=True)
class MapColumn:
    """One column: name, type and whether NULL is allowed (ids only; floats use NaN)."""

    name: str
    type: ColumnType
    nullable: bool = False


@dataclass(frozen=True)
class MapLayerSchema:
    """One layer: its columns (``fid`` first) and geometry type (None for a non-spatial table).

    required: the map reader needs the layer (the others are written for format fidelity only).
    """

    name: str
    geometry_type: GeometryType | None
    columns: tuple[MapColumn, ...]
    required: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> MapColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"map layer {self.name!r} has no column {name!r}")


def _ints(*names: str, nullable: bool = False) -> tuple[MapColumn, ...]:
    return tuple(MapColumn(n, "int", nullable) for n in names)


_FID = MapColumn("fid", "int")
_SPEED = MapColumn("speed_limit_mps", "float")


def _polygons(name: str, required: bool = True) -> MapLayerSchema:
    return MapLayerSchema(name, "Polygon", (_FID,), required)


_LAYER_LIST: tuple[MapLayerSchema, ...] = (
    MapLayerSchema(
        "baseline_paths",
        "LineString",
        (_FID, *_ints("lane_fid", "lane_connector_fid", nullable=True)),
    ),
    MapLayerSchema("boundaries", "LineString", (_FID,)),
    _polygons("carpark_areas"),
    _polygons("crosswalks"),
    MapLayerSchema("dubins_nodes", "Point", (_FID,), required=False),
    MapLayerSchema(
        "gen_lane_connectors_scaled_width_polygons",
        "Polygon",
        (_FID, *_ints("lane_connector_fid", "left_boundary_fid", "right_boundary_fid")),
    ),
    _polygons("generic_drivable_areas", required=False),
    _polygons("intersections"),
    MapLayerSchema(
        "lane_connectors",
        "LineString",
        (
            _FID,
            *_ints("entry_lane_fid", "exit_lane_fid", "lane_group_connector_fid"),
            MapColumn("intersection_fid", "int", nullable=True),
            _SPEED,
            MapColumn("traffic_light_stop_line_fids", "str"),
        ),
    ),
    MapLayerSchema(
        "lane_group_connectors",
        "Polygon",
        (
            _FID,
            *_ints("from_lane_group_fid", "to_lane_group_fid"),
            MapColumn("intersection_fid", "int", nullable=True),
        ),
    ),
    _polygons("lane_groups_polygons"),
    MapLayerSchema(
        "lanes_polygons",
        "Polygon",
        (
            _FID,
            *_ints("lane_fid", "lane_index", "lane_group_fid"),
            *_ints("left_boundary_fid", "right_boundary_fid"),
            _SPEED,
        ),
    ),
    _polygons("road_segments", required=False),
    MapLayerSchema("stop_polygons", "Polygon", (_FID, *_ints("stop_polygon_type_fid"))),
    MapLayerSchema("traffic_lights", "Point", (_FID, *_ints("lane_connector_fid")), required=False),
    _polygons("walkways"),
)

# The 16 vector layers of a nuPlan map, by name (alphabetical, as in the spec).
LAYERS: dict[str, MapLayerSchema] = {s.name: s for s in _LAYER_LIST}
VECTOR_LAYER_NAMES: tuple[str, ...] = tuple(LAYERS)
REQUIRED_LAYER_NAMES: tuple[str, ...] = tuple(n for n, s in LAYERS.items() if s.required)

# The non-spatial key/value table (its fid is an arbitrary row number).
META_SCHEMA = MapLayerSchema(META_LAYER, None, (MapColumn("key", "str"), MapColumn("value", "str")))
