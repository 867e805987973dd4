"""Write nuPlan GeoPackage maps and a maps root through GDAL (pyogrio), in the nuPlan layout.

``write_map_gpkg`` writes one ``map.gpkg``: the 16 vector layers of ``map_schema.LAYERS`` (a layer
not given is written empty) and the ``meta`` table. The GeoPackage feature id of every feature is
its ``fid`` column (checked by reading the ids back). ``write_maps_root`` writes
``<root>/<location>/<version>/map.gpkg`` per location and ``<root>/nuplan-maps-v1.0.json``.
Files are written under a temporary name and renamed, so a reader never sees half a map.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyogrio import raw

from pluto_dvc.io import atomic_write, write_json
from pluto_dvc.nuplan.locations import LOCATIONS, MAP_FILE_NAME, MAPS_VERSION_JSON, MapLocation
from pluto_dvc.nuplan.map_layers import LayerTable
from pluto_dvc.nuplan.map_schema import (
    LAYERS,
    META_LAYER,
    META_SCHEMA,
    PROJECTED_CRS_KEY,
    MapColumn,
    MapLayerSchema,
)

FIXED_CHANGE_DATE = "2021-01-01T00:00:00.000Z"


def write_map_gpkg(
    path: str | Path,
    layers: Mapping[str, LayerTable],
    location: MapLocation,
    *,
    layer_crs: Mapping[str, str] | None = None,
) -> Path:
    """Write one map GeoPackage; return its path.

    layers: layer name -> table; coordinates in the location's UTM CRS (``location.crs``) unless
        ``layer_crs`` names another CRS for that layer (e.g. ``"EPSG:4326"`` with lon/lat
        coordinates, as some real maps store them). An optional ``"meta"`` table adds key/value
        rows; ``projectedCoordSystem`` defaults to ``location.crs``.
    Raises ValueError for an unknown layer, a missing column, a duplicate fid or a wrong geometry.
    """
    path = Path(path)
    unknown = sorted(set(layers) - set(LAYERS) - {META_LAYER})
    if unknown:
        raise ValueError(f"unknown map layer(s) {unknown}: expected names of map_schema.LAYERS")
    layer_crs = dict(layer_crs or {})
    if set(layer_crs) - set(LAYERS):
        raise ValueError(f"layer_crs names unknown layer(s) {sorted(set(layer_crs) - set(LAYERS))}")

    def write(tmp_name: str) -> None:
        tmp = Path(tmp_name)
        tmp.unlink()  # GDAL creates the GeoPackage itself
        for name, schema in LAYERS.items():
            table = layers.get(name, LayerTable(fields={}, geometry=[]))
            _write_layer(tmp, schema, table, layer_crs.get(name, location.crs))
        _write_meta(tmp, layers.get(META_LAYER), location)

    # GDAL stamps gpkg_contents.last_change with the wall clock; a fixed stamp keeps the same
    # layers byte-identical (DVC addresses outputs by content)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": FIXED_CHANGE_DATE})
    try:
        return atomic_write(path, write, suffix=".gpkg")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def write_maps_root(root: str | Path, maps: Mapping[str, Mapping[str, LayerTable]]) -> Path:
    """Write ``<root>/<location>/<version>/map.gpkg`` per location, then the version json.

    maps: location name (one of ``locations.LOCATIONS``) -> its layers (see ``write_map_gpkg``).
    The json maps each written location to ``{"version": ..., "layers": {name: {"geometry_type",
    "num_features"}}}`` (the devkit reads only ``version``). A real maps root holds all four
    locations, and ``map_reader.MapsRoot`` refuses one that does not. Returns the json path.
    """
    root = Path(root)
    unknown = sorted(set(maps) - set(LOCATIONS))
    if unknown:
        raise ValueError(f"unknown map location(s) {unknown}: expected one of {list(LOCATIONS)}")
    metadata: dict[str, dict] = {}
    for name, loc in LOCATIONS.items():
        if name not in maps:
            continue
        layers = maps[name]
        write_map_gpkg(root / name / loc.version / MAP_FILE_NAME, layers, loc)
        metadata[name] = {
            "version": loc.version,
            "layers": {
                layer: {
                    "geometry_type": schema.geometry_type,
                    "num_features": len(layers[layer]) if layer in layers else 0,
                }
                for layer, schema in LAYERS.items()
            },
        }
    json_path = root / MAPS_VERSION_JSON
    return write_json(json_path, metadata, sort_keys=True)


# ------------------------------------------------------------------------------------- layers


def _write_layer(path: Path, schema: MapLayerSchema, table: LayerTable, crs: str) -> None:
    table.validate()
    n = len(table)
    missing = [c for c in schema.column_names if c not in table.fields and n > 0]
    if missing:
        raise ValueError(f"map layer {schema.name!r} lacks column(s) {missing}")
    geoms = np.asarray(list(table.geometry or []), dtype=object)
    if geoms.shape != (n,) or (n and any(g is None for g in geoms)):
        raise ValueError(f"map layer {schema.name!r} needs one geometry per feature")
    bad = set(shapely.get_type_id(geoms).tolist()) - {_GEOM_TYPE_IDS[schema.geometry_type]}
    if n and bad:
        raise ValueError(f"map layer {schema.name!r} holds non-{schema.geometry_type} geometries")

    names, arrays, masks = [], [], []
    extra = [c for c in table.fields if c not in schema.column_names]
    for col in (*schema.columns, *(_infer_column(c, table.fields[c]) for c in extra)):
        values, mask = _column_array(schema.name, col, table.fields.get(col.name, []))
        names.append(col.name)
        arrays.append(values)
        masks.append(mask)
    fids = arrays[0]
    if len(np.unique(fids)) != n:
        raise ValueError(f"map layer {schema.name!r} has duplicate fids")
    raw.write(
        str(path),
        shapely.to_wkb(geoms) if n else np.empty(0, dtype=object),
        arrays,
        names,
        field_mask=masks,
        layer=schema.name,
        driver="GPKG",
        geometry_type=schema.geometry_type,
        crs=crs,
    )
    _check_fids(path, schema.name, fids)


def _write_meta(path: Path, meta: LayerTable | None, location: MapLocation) -> None:
    keys = [str(k) for k in (meta.fields.get("key", []) if meta else [])]
    values = [str(v) for v in (meta.fields.get("value", []) if meta else [])]
    if len(keys) != len(values):
        raise ValueError("map layer 'meta' needs as many values as keys")
    if PROJECTED_CRS_KEY not in keys:
        keys.append(PROJECTED_CRS_KEY)
        values.append(location.crs)
    raw.write(
        str(path),
        None,
        [np.asarray(keys, dtype=object), np.asarray(values, dtype=object)],
        list(META_SCHEMA.column_names),
        layer=META_LAYER,
        driver="GPKG",
    )


def _check_fids(path: Path, layer: str, fids: np.ndarray) -> None:
    """The GeoPackage feature ids read back are exactly the ``fid`` column."""
    _, table = pyogrio.read_arrow(str(path), layer=layer, read_geometry=False, return_fids=True)
    stored = np.sort(table.column("fid").to_numpy())
    if not np.array_equal(stored, np.sort(fids)):
        raise RuntimeError(f"GDAL did not keep the fid column as feature id in layer {layer!r}")


_GEOM_TYPE_IDS = {"Point": 0, "LineString": 1, "Polygon": 3}


def _infer_column(name: str, values: np.ndarray | list) -> MapColumn:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return MapColumn(name, "int")
    if arr.dtype.kind == "f":
        return MapColumn(name, "float")
    return MapColumn(name, "str")


def _column_array(
    layer: str, col: MapColumn, values: np.ndarray | list
) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as the on-disk dtype, and the NULL mask of a nullable int column (else None)."""
    if col.type == "str":
        return np.asarray(["" if v is None else str(v) for v in values], dtype=object), None
    if col.type == "float":
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64), None
    as_float = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    null = np.isnan(as_float)
    if null.any() and not col.nullable:
        raise ValueError(f"map layer {layer!r} column {col.name!r} may not be null")
    if np.any(as_float[~null] != np.round(as_float[~null])):
        raise ValueError(f"map layer {layer!r} column {col.name!r} holds non-integer values")
    ints = np.where(null, 0, as_float).astype(np.int64)
    if not null.any():  # exact for ids beyond 2**53 too
        ints = np.asarray(values, dtype=np.int64).reshape(-1)
    return ints, (null if col.nullable else None)
