"""Reading a nuPlan map GeoPackage into the typed records of ``map_records``.

``read_map_records(path)`` checks the file (SQLite header, the required layers), reads each layer
once with pyogrio, reprojects it into the ``meta`` table's ``projectedCoordSystem`` when the
layer's CRS differs (real maps may store lat/lon), types the schema's columns, and assembles the
records: lanes with their centrelines and boundaries oriented in the driving direction,
connectors, roadblocks with their lanes, the drivable area. Every problem with the file raises
:class:`DataError` naming it and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import pyogrio.errors
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.errors import GEOSException

from pluto_dvc.arrays import lookup_sorted, offsets_from_counts
from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import MAPS_VERSION_JSON
from pluto_dvc.nuplan.map_records import (
    DrivableArea,
    LaneConnectors,
    Lanes,
    PolygonLayer,
    Polylines,
    RoadblockConnectors,
    Roadblocks,
    StopPolygons,
    first_per_key,
    group_rows,
)
from pluto_dvc.nuplan.map_schema import (
    LAYERS,
    META_LAYER,
    NULL_FID,
    PROJECTED_CRS_KEY,
    REQUIRED_LAYER_NAMES,
    MapLayerSchema,
)
from pluto_dvc.nuplan.sqlite import check_sqlite_file

FIX_MAPS_ROOT = (
    "point data.maps_root / NUPLAN_MAPS_ROOT at the folder that holds "
    f"{MAPS_VERSION_JSON}, or run `pluto-dvc synthesize` to generate the synthetic maps"
)
FIX_MAP_FILE = (
    "re-download the nuPlan maps, or regenerate the synthetic maps (`pluto-dvc synthesize`)"
)


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
            raise DataError(f"map file {path} is missing: {FIX_MAPS_ROOT}")
        check_sqlite_file(path, "map file", "a GeoPackage", FIX_MAP_FILE)
        try:
            names = {str(n) for n in pyogrio.list_layers(str(path))[:, 0]}
        except pyogrio.errors.DataSourceError as e:
            raise DataError(
                f"map file {path} is not a readable GeoPackage ({e}): {FIX_MAP_FILE}"
            ) from None
        missing = [n for n in REQUIRED_LAYER_NAMES if n not in names]
        if missing:
            raise self._missing_layers(missing)
        self.crs = self._projected_crs()
        self._transformers: dict[str, Transformer | None] = {}

    def _missing_layers(self, missing: Sequence[str]) -> DataError:
        return DataError(
            f"map file {self.path} lacks layer(s) {', '.join(missing)} (a nuPlan map holds "
            f"{', '.join(REQUIRED_LAYER_NAMES)} and {META_LAYER}): {FIX_MAP_FILE}"
        )

    def _read_arrow(self, layer: str, **options: str) -> tuple[dict, pa.Table]:
        try:
            return pyogrio.read_arrow(str(self.path), layer=layer, return_fids=True, **options)
        except pyogrio.errors.DataLayerError:
            raise self._missing_layers([layer]) from None
        except pyogrio.errors.DataSourceError as e:
            raise DataError(
                f"map file {self.path}: layer '{layer}' is unreadable ({e}): {FIX_MAP_FILE}"
            ) from None

    def _projected_crs(self) -> CRS:
        # Non-spatial tables may be missing from gpkg_contents: ask GDAL to list every table.
        _, table = self._read_arrow(META_LAYER, LIST_ALL_TABLES="YES")
        if "key" not in table.column_names or "value" not in table.column_names:
            raise DataError(
                f"map file {self.path}: table '{META_LAYER}' lacks key/value columns: {FIX_MAP_FILE}"
            )
        meta = dict(zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True))
        value = meta.get(PROJECTED_CRS_KEY)
        if not value:
            raise DataError(
                f"map file {self.path}: table '{META_LAYER}' has no '{PROJECTED_CRS_KEY}' row: {FIX_MAP_FILE}"
            )
        try:
            return CRS.from_user_input(value)
        except CRSError as e:
            raise DataError(
                f"map file {self.path}: '{PROJECTED_CRS_KEY}' is not a CRS ({e}): {FIX_MAP_FILE}"
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
            raise DataError(
                f"map file {self.path}: layer '{name}' has no feature ids: {FIX_MAP_FILE}"
            )
        missing = [c for c in schema.column_names[1:] if c not in table.column_names]
        if missing:
            raise DataError(
                f"map file {self.path}: layer '{name}' lacks column(s) {', '.join(missing)}: {FIX_MAP_FILE}"
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
                f"map file {self.path}: layer '{name}' has bad geometries ({e}): {FIX_MAP_FILE}"
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
                    f"map file {self.path}: unknown layer CRS ({e}): {FIX_MAP_FILE}"
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
            raise DataError(f"{where} is not numeric ({e}): {FIX_MAP_FILE}") from None
        if column.type == "float":
            return pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_integer(values.type):
            ints = pc.fill_null(values, NULL_FID).to_numpy(zero_copy_only=False).astype(np.int64)
            null = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            f = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
            null = np.isnan(f)
            if np.any(f[~null] != np.round(f[~null])):
                raise DataError(f"{where} holds non-integer ids: {FIX_MAP_FILE}")
            ints = np.where(null, NULL_FID, f).astype(np.int64)
        if null.any() and not column.nullable:
            raise DataError(f"{where} is empty in {int(null.sum())} row(s): {FIX_MAP_FILE}")
        return ints


def read_map_records(path: Path) -> dict[str, Any]:
    """The typed records of one map GeoPackage and its CRS, as ``NuPlanMap``'s fields (keyword
    arguments); DataError naming the file for anything wrong with it."""
    reader = _GpkgReader(path)
    try:
        return _build_records(reader)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, GEOSException) as e:
        raise corrupt_map(path, e) from None


def corrupt_map(path: Path, exc: Exception) -> DataError:
    return DataError(f"map file {path} is corrupt ({exc}): {FIX_MAP_FILE}")


def _build_records(reader: _GpkgReader) -> dict[str, Any]:
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
    lane_rows = lookup_sorted(groups.fid, lanes.lane_group_fid)
    order = np.lexsort((lanes.fid, lanes.lane_index, lane_rows))
    roadblocks = Roadblocks(
        groups.fid,
        groups.geometry,
        *group_rows(lane_rows[order], lanes.fid[order], len(groups.fid), presorted=True),
    )
    conn_rows = lookup_sorted(group_connectors.fid, connectors.lane_group_connector_fid)
    roadblock_connectors = RoadblockConnectors(
        group_connectors.fid,
        group_connectors.columns["from_lane_group_fid"],
        group_connectors.columns["to_lane_group_fid"],
        group_connectors.columns["intersection_fid"],
        group_connectors.geometry,
        *group_rows(conn_rows, connectors.fid, len(group_connectors.fid)),
    )
    carparks = _polygons(layers["carpark_areas"])
    sources = (roadblocks, roadblock_connectors, carparks)
    drivable = DrivableArea(
        np.concatenate([s.polygon for s in sources]),
        np.repeat(np.arange(3, dtype=np.int8), [len(s) for s in sources]),
        np.concatenate([s.fid for s in sources]),
    )
    stops = layers["stop_polygons"]
    return dict(
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


def _polygons(layer: _Layer) -> PolygonLayer:
    return PolygonLayer(layer.fid, layer.geometry)


def _centerlines(baseline: _Layer, key: str, fids: np.ndarray) -> np.ndarray:
    """(K,) object: the baseline path whose ``key`` column is each fid (first by fid), else None."""
    first = first_per_key(lookup_sorted(fids, baseline.columns[key]), len(fids))
    out = np.full(len(fids), None, dtype=object)
    out[first >= 0] = baseline.geometry[first[first >= 0]]
    return out


def _require_centerlines(path: Path, fids: np.ndarray, centre: np.ndarray, what: str) -> Polylines:
    """The centrelines as polylines; DataError naming the first fids (``what``.format) of those
    that are missing or have fewer than two points."""
    bad = fids[shapely.is_missing(centre) | (shapely.get_num_points(centre) < 2)]
    if bad.size:
        raise DataError(f"map file {path}: {what.format(bad[:5].tolist())}: {FIX_MAP_FILE}")
    return Polylines.from_geometries(centre)


def _boundaries(boundaries: _Layer, fids: np.ndarray, centerline: Polylines) -> Polylines:
    rows = lookup_sorted(boundaries.fid, fids)
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
    centerline = _require_centerlines(
        path,
        layer.fid,
        _centerlines(baseline, "lane_fid", layer.fid),
        "lane(s) {} of 'lanes_polygons' have no centreline in 'baseline_paths' (a row whose "
        "lane_fid is the lane)",
    )
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
    centerline = _require_centerlines(
        path,
        layer.fid,
        centre,
        "lane connector(s) {} have no centreline in 'baseline_paths' nor a line in "
        "'lane_connectors'",
    )
    owner = lookup_sorted(layer.fid, shapes.columns["lane_connector_fid"])
    shape_rows = first_per_key(owner, len(layer.fid))  # the lowest-fid shape per connector
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
        stop_line_offsets=offsets_from_counts(
            np.array([len(s) for s in stop_lists], dtype=np.int64)
        ),
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
            f"not a comma-separated list of ids: {FIX_MAP_FILE}"
        ) from None
