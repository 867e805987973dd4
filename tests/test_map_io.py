"""nuPlan GeoPackage maps: schema on disk, writer, reader round trip, lane graph, spatial queries,
reprojection, and a clear DataError for every bad maps root or map file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from pyogrio import raw
from pyproj import CRS, Transformer
from shapely.geometry import Point, box

from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import LOCATIONS, MAP_FILE_NAME, MAPS_VERSION_JSON
from pluto_dvc.nuplan.map_layers import LayerTable
from pluto_dvc.nuplan.map_reader import (
    DRIVABLE_SOURCES,
    MapLayer,
    MapsRoot,
    NuPlanMap,
    Polylines,
)
from pluto_dvc.nuplan.map_schema import LAYERS, META_LAYER, NULL_FID, PROJECTED_CRS_KEY
from pluto_dvc.nuplan.map_writer import write_map_gpkg, write_maps_root
from pluto_dvc.testing.map_factory import (
    make_grid_layers,
    make_map_layers,
    write_test_maps_root,
)

BOSTON = LOCATIONS["us-ma-boston"]
X0, Y0 = BOSTON.utm_origin
OGR_TYPES = {"int": "OFTInteger64", "float": "OFTReal", "str": "OFTString"}


@pytest.fixture(scope="module")
def written_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_maps_root(tmp_path_factory.mktemp("maps"))


@pytest.fixture
def root(written_root: Path, tmp_path: Path) -> Path:
    """A private copy of the maps root that a test may damage."""
    return Path(shutil.copytree(written_root, tmp_path / "maps"))


@pytest.fixture(scope="module")
def layers() -> dict[str, LayerTable]:
    return make_map_layers(BOSTON)


@pytest.fixture(scope="module")
def boston(written_root: Path) -> NuPlanMap:
    return MapsRoot(written_root).load(BOSTON.name)


def gpkg(root: Path, location: str = BOSTON.name) -> Path:
    return root / location / LOCATIONS[location].version / MAP_FILE_NAME


def column(table: LayerTable, name: str, fid: int) -> object:
    return table.fields[name][list(table.fields["fid"]).index(fid)]


def geometry(table: LayerTable, fid: int) -> shapely.Geometry:
    return table.geometry[list(table.fields["fid"]).index(fid)]


def column_index(table: LayerTable, name: str, value: int) -> int:
    """fid of the row whose ``name`` column equals value."""
    return next(
        f for f, v in zip(table.fields["fid"], table.fields[name], strict=True) if v == value
    )


def rewrite_gpkg(src: Path, dst: Path, drop_layers=(), edit=None) -> None:
    """Copy a gpkg layer by layer with pyogrio, leaving out ``drop_layers``; ``edit(layer, names,
    arrays)`` may return changed (names, arrays)."""
    for layer in pyogrio.list_layers(src)[:, 0]:
        if layer in drop_layers:
            continue
        meta, fids, geom, data = raw.read(src, layer=layer, return_fids=True)
        names, arrays = list(meta["fields"]), list(data)
        if edit is not None:
            names, arrays = edit(layer, names, arrays)
        if layer != META_LAYER:
            names, arrays = ["fid", *names], [fids, *arrays]
        raw.write(
            dst,
            geom,
            arrays,
            names,
            layer=layer,
            driver="GPKG",
            geometry_type=meta["geometry_type"],
            crs=meta["crs"],
        )


# ------------------------------------------------------------------------------------ on disk


def test_maps_root_layout_and_version_json(written_root: Path) -> None:
    metadata = json.loads((written_root / MAPS_VERSION_JSON).read_text())
    assert sorted(metadata) == sorted(LOCATIONS)
    for name, loc in LOCATIONS.items():
        assert metadata[name]["version"] == loc.version
        assert gpkg(written_root, name).is_file()
        assert metadata[name]["layers"]["lanes_polygons"] == {
            "geometry_type": "Polygon",
            "num_features": 5,
        }
    assert not list(written_root.rglob("*.tmp*"))


def test_layers_open_with_pyogrio_and_carry_the_spec_columns(written_root: Path) -> None:
    path = gpkg(written_root)
    listed = dict(pyogrio.list_layers(path).tolist())
    assert set(listed) == {*LAYERS, META_LAYER}
    assert listed[META_LAYER] is None
    for name, schema in LAYERS.items():
        info = pyogrio.read_info(path, layer=name)
        assert info["geometry_type"] == schema.geometry_type, name
        assert info["crs"] == f"EPSG:{BOSTON.epsg}", name
        assert info["fid_column"] == "fid"
        types = dict(zip(info["fields"], info["ogr_types"], strict=True))
        for col in schema.columns[1:]:
            assert types[col.name] == OGR_TYPES[col.type], (name, col.name)
    _, table = pyogrio.read_arrow(path, layer=META_LAYER)
    meta = dict(zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True))
    assert CRS.from_user_input(meta[PROJECTED_CRS_KEY]).to_epsg() == BOSTON.epsg


def test_feature_ids_are_the_fid_column(written_root: Path, layers: dict) -> None:
    path = gpkg(written_root)
    for name in LAYERS:
        _, table = pyogrio.read_arrow(path, layer=name, return_fids=True)
        assert sorted(table["fid"].to_pylist()) == sorted(layers[name].fields["fid"]), name
    # The id belongs to the right row: lanes carry lane_fid == fid, connectors their lanes.
    _, fids, _, data = raw.read(
        path, layer="lanes_polygons", columns=["lane_fid"], return_fids=True
    )
    assert fids.tolist() == [9, 11, 12, 13, 14]
    assert data[0].tolist() == fids.tolist()
    meta, fids, _, data = raw.read(path, layer="lane_connectors", return_fids=True)
    cols = dict(zip(meta["fields"], data, strict=True))
    pairs = zip(cols["exit_lane_fid"].tolist(), cols["entry_lane_fid"].tolist(), strict=True)
    assert dict(zip(fids.tolist(), pairs, strict=True)) == {21: (11, 12), 22: (11, 14)}


def test_nan_and_missing_ids_are_stored_as_null(written_root: Path) -> None:
    _, table = pyogrio.read_arrow(gpkg(written_root), layer="lanes_polygons", return_fids=True)
    speeds = dict(zip(table["fid"].to_pylist(), table["speed_limit_mps"].to_pylist(), strict=True))
    assert speeds == {9: 15.0, 11: 15.0, 12: 15.0, 13: None, 14: 12.0}
    _, table = pyogrio.read_arrow(gpkg(written_root), layer="baseline_paths")
    lane, conn = table["lane_fid"].to_pylist(), table["lane_connector_fid"].to_pylist()
    assert all((a is None) != (b is None) for a, b in zip(lane, conn, strict=True))
    assert sorted(c for c in conn if c is not None) == [21, 22]


# ------------------------------------------------------------------------------- round trip


def test_lanes_round_trip(boston: NuPlanMap, layers: dict) -> None:
    lanes = boston.lanes
    lanes.validate()
    table = layers["lanes_polygons"]
    assert lanes.fid.tolist() == [9, 11, 12, 13, 14]
    assert lanes.fid.dtype == np.int64
    for name in ("lane_fid", "lane_index", "lane_group_fid", "left_boundary_fid"):
        assert getattr(lanes, name).tolist() == [column(table, name, f) for f in lanes.fid]
    assert lanes.right_boundary_fid.tolist() == [208, 202, 205, 203, 207]
    baseline = layers["baseline_paths"]
    for row, fid in enumerate(lanes.fid):
        assert shapely.equals_exact(lanes.polygon[row], geometry(table, fid), 1e-9)
        bp = geometry(baseline, column_index(baseline, "lane_fid", fid))
        np.testing.assert_allclose(lanes.centerline[row], np.asarray(bp.coords), atol=1e-9)
    c11 = lanes.centerline[lanes.row(11)]
    assert len(c11) == 201  # 50 m at 0.25 m
    np.testing.assert_allclose(np.diff(c11, axis=0), [[0.25, 0.0]] * 200, atol=1e-9)


def test_lane_boundaries_follow_the_driving_direction(boston: NuPlanMap) -> None:
    lanes = boston.lanes
    # Lane 11 (eastbound): left 201 stored eastbound, right 202 stored westbound -> flipped.
    left, right = lanes.left_boundary[lanes.row(11)], lanes.right_boundary[lanes.row(11)]
    np.testing.assert_allclose(left[[0, -1]], [[X0, Y0 + 1.75], [X0 + 50, Y0 + 1.75]], atol=1e-9)
    np.testing.assert_allclose(right[[0, -1]], [[X0, Y0 - 1.75], [X0 + 50, Y0 - 1.75]], atol=1e-9)
    # Lane 13 (westbound) shares 201 as its left boundary: reversed for it.
    left = lanes.left_boundary[lanes.row(13)]
    np.testing.assert_allclose(left[[0, -1]], [[X0 + 50, Y0 + 1.75], [X0, Y0 + 1.75]], atol=1e-9)
    right = lanes.right_boundary[lanes.row(13)]
    np.testing.assert_allclose(right[[0, -1]], [[X0 + 50, Y0 + 5.25], [X0, Y0 + 5.25]], atol=1e-9)


def test_lane_connectors_round_trip(boston: NuPlanMap, layers: dict) -> None:
    conns = boston.lane_connectors
    conns.validate()
    assert conns.fid.tolist() == [21, 22]
    assert conns.exit_lane_fid.tolist() == [11, 11]
    assert conns.entry_lane_fid.tolist() == [12, 14]
    assert conns.lane_group_connector_fid.tolist() == [301, 302]
    assert conns.intersection_fid.tolist() == [401, 401]
    assert conns.left_boundary_fid.tolist() == [211, 213]
    assert conns.right_boundary_fid.tolist() == [212, 214]
    assert conns.stop_lines(21).tolist() == [501]
    assert conns.stop_lines(22).tolist() == []
    turn = conns.centerline[conns.row(22)]
    np.testing.assert_allclose(turn[[0, -1]], [[X0 + 50, Y0], [X0 + 62, Y0 - 12]], atol=1e-9)
    np.testing.assert_allclose(np.hypot(turn[:, 0] - X0 - 50, turn[:, 1] - Y0 + 12), 12.0)
    left = conns.left_boundary[conns.row(22)]  # outer edge of a right turn
    radius = np.hypot(left[:, 0] - X0 - 50, left[:, 1] - Y0 + 12)
    np.testing.assert_allclose(radius, 13.75, atol=1e-3)
    shapes = layers["gen_lane_connectors_scaled_width_polygons"]
    expected = geometry(shapes, column_index(shapes, "lane_connector_fid", 22))
    assert shapely.equals_exact(conns.polygon[conns.row(22)], expected, 1e-9)


def test_roadblocks_and_polygon_layers_round_trip(boston: NuPlanMap, layers: dict) -> None:
    rb = boston.roadblocks
    assert rb.fid.tolist() == [101, 102, 103, 104]
    assert rb.lanes_of(101).tolist() == [11, 9]  # by lane_index, not by fid
    assert rb.lanes_of(104).tolist() == [14]
    rbc = boston.roadblock_connectors
    assert rbc.fid.tolist() == [301, 302]
    assert rbc.from_lane_group_fid.tolist() == [101, 101]
    assert rbc.to_lane_group_fid.tolist() == [102, 104]
    assert rbc.connectors_of(302).tolist() == [22]
    assert shapely.equals_exact(
        boston.crosswalks.polygon[0], box(X0 + 72, Y0 - 2, X0 + 76, Y0 + 6), 1e-9
    )
    assert boston.crosswalks.fid.tolist() == [601]
    assert boston.intersections.fid.tolist() == [401]
    assert boston.walkways.fid.tolist() == [701]
    assert boston.carpark_areas.fid.tolist() == [801]
    assert boston.stop_polygons.fid.tolist() == [501]
    assert boston.stop_polygons.stop_polygon_type_fid.tolist() == [2]
    boston.validate()


def test_drivable_area(boston: NuPlanMap) -> None:
    area = boston.drivable_area
    assert [DRIVABLE_SOURCES[s] for s in area.source] == (
        ["lane_groups_polygons"] * 4 + ["lane_group_connectors"] * 2 + ["carpark_areas"]
    )
    assert area.fid.tolist() == [101, 102, 103, 104, 301, 302, 801]
    union = area.union
    assert union.contains(Point(X0 + 25, Y0 - 3.5))  # lane 9
    assert union.contains(Point(X0 + 60, Y0))  # straight connector
    assert union.contains(Point(X0 - 30, Y0 + 20))  # carpark
    assert not union.contains(Point(X0 + 25, Y0 + 7))  # walkway only
    assert union.area == pytest.approx(shapely.union_all(area.polygons).area)


# ------------------------------------------------------------------------------- lane graph


def test_connector_direction_and_graph(boston: NuPlanMap) -> None:
    assert boston.outgoing_connectors(11).tolist() == [21, 22]
    assert boston.incoming_connectors(11).tolist() == []
    assert boston.incoming_connectors(12).tolist() == [21]
    assert boston.outgoing_connectors(12).tolist() == []
    assert boston.incoming_connectors(14).tolist() == [22]
    assert boston.successor_lanes(11).tolist() == [12, 14]
    assert boston.predecessor_lanes(12).tolist() == [11]
    assert boston.predecessor_lanes(14).tolist() == [11]
    assert boston.successor_lanes(13).tolist() == []
    # Geometry agrees: an outgoing connector starts where its lane ends, ends where the next starts.
    lanes, conns = boston.lanes, boston.lane_connectors
    for lane in lanes.fid:
        end = lanes.centerline[lanes.row(lane)][-1]
        for c in boston.outgoing_connectors(lane):
            line = conns.centerline[conns.row(c)]
            np.testing.assert_allclose(line[0], end, atol=1e-6)
            entry = conns.entry_lane_fid[conns.row(c)]
            np.testing.assert_allclose(line[-1], lanes.centerline[lanes.row(entry)][0], atol=1e-6)


def test_speed_limits_nan_is_none(boston: NuPlanMap) -> None:
    assert boston.lanes.speed_limit(11) == 15.0
    assert boston.lanes.speed_limit(14) == 12.0
    assert boston.lanes.speed_limit(13) is None
    assert np.isnan(boston.lanes.speed_limit_mps[boston.lanes.row(13)])
    assert boston.lane_connectors.speed_limit(21) == 10.0
    assert boston.lane_connectors.speed_limit(22) is None
    with pytest.raises(KeyError, match="no fid 99"):
        boston.lanes.speed_limit(99)


# --------------------------------------------------------------------------- spatial queries


def test_query_radius_known_values(boston: NuPlanMap) -> None:
    near = boston.query_radius(X0 + 60, Y0, 1.0)
    assert set(near) == {m.value for m in MapLayer}
    assert near["lane_connector"].tolist() == [21]  # the turn's polygon is ~1.9 m away
    assert near["lane"].tolist() == []
    assert near["intersection"].tolist() == [401]
    assert near["roadblock_connector"].tolist() == [301]
    wide = boston.query_radius(X0 + 60, Y0, 2.5, layers=["lane_connector", "lanes_polygons"])
    assert {k: v.tolist() for k, v in wide.items()} == {
        "lane_connector": [21, 22],
        "lanes_polygons": [],
    }
    # The crosswalk's top edge is 3 m from (X0 + 74, Y0 + 9).
    assert boston.query_radius(X0 + 74, Y0 + 9, 2.9, ["crosswalk"])["crosswalk"].tolist() == []
    assert boston.query_radius(X0 + 74, Y0 + 9, 3.1, ["crosswalk"])["crosswalk"].tolist() == [601]
    assert boston.query_radius(X0 + 74, Y0 + 10, 3.9, ["crosswalk"])["crosswalk"].tolist() == []
    with pytest.raises(ValueError, match="unknown map query layer"):
        boston.query_radius(X0, Y0, 1.0, ["lanes"])


def test_query_radius_matches_brute_force(boston: NuPlanMap, layers: dict) -> None:
    sources = {
        "lane": layers["lanes_polygons"],
        "lane_connector": layers["gen_lane_connectors_scaled_width_polygons"],
        "roadblock": layers["lane_groups_polygons"],
        "crosswalk": layers["crosswalks"],
        "walkway": layers["walkways"],
        "stop_polygon": layers["stop_polygons"],
    }
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = X0 + rng.uniform(-50, 130), Y0 + rng.uniform(-70, 40)
        r = rng.uniform(0.5, 15)
        got = boston.query_radius(x, y, r, list(sources))
        for name, table in sources.items():
            d = shapely.distance(np.asarray(table.geometry, dtype=object), Point(x, y))
            ids = table.fields["lane_connector_fid" if name == "lane_connector" else "fid"]
            assert got[name].tolist() == sorted(np.asarray(ids)[d <= r].tolist()), (name, x, y, r)


def test_nearest_lane_with_heading(boston: NuPlanMap) -> None:
    # On the boundary shared by lane 11 (eastbound) and lane 13 (westbound): equidistant.
    assert boston.nearest_lane(X0 + 10, Y0 + 1.75, heading=0.0) == 11
    assert boston.nearest_lane(X0 + 10, Y0 + 1.75, heading=math.pi) == 13
    assert boston.nearest_lane(X0 + 10, Y0 + 1.75, heading=-3.0) == 13
    # Nearer lane 13's centreline, but driving east: lane 11 is preferred.
    assert boston.nearest_lane(X0 + 10, Y0 + 2.2) == 13
    assert boston.nearest_lane(X0 + 10, Y0 + 2.2, heading=0.2) == 11
    assert boston.nearest_lane(X0 + 10, Y0 - 3.0) == 9
    hit = boston.nearest_lane_hit(X0 + 60, Y0 + 0.2, heading=0.0)
    assert (hit.layer, hit.fid) == (MapLayer.LANE_CONNECTOR, 21)
    assert hit.distance == pytest.approx(0.2)
    # On the turn, heading south-east: the turn, not the straight connector.
    p = (X0 + 50 + 12 * math.cos(math.pi / 4), Y0 - 12 + 12 * math.sin(math.pi / 4))
    hit = boston.nearest_lane_hit(*p, heading=-math.pi / 4)
    assert hit.fid == 22
    assert hit.heading == pytest.approx(-math.pi / 4, abs=0.05)
    # Lane 14 runs south. Heading north-north-west: westbound lane 13, 43.5 m away, is preferred;
    # with nothing aligned within the search radius, the nearest lane of any direction.
    assert boston.nearest_lane(X0 + 62, Y0 - 40, heading=math.pi / 2 + 0.3) == 13
    hit = boston.nearest_lane_hit(X0 + 62, Y0 - 40, heading=math.pi / 2 + 0.3, max_search_m=8)
    assert (hit.fid, hit.distance) == (14, pytest.approx(0.0))
    assert boston.nearest_lane(X0 + 62, Y0 + 500) in (12, 21, 13, 11)


# ------------------------------------------------------------------------------ reprojection


def test_layers_stored_in_lat_lon_are_reprojected(tmp_path: Path) -> None:
    vegas = LOCATIONS["us-nv-las-vegas-strip"]
    utm = make_map_layers(vegas)
    to_lonlat = Transformer.from_crs(vegas.crs, "EPSG:4326", always_xy=True)
    lonlat = dict(utm)
    moved = ("lanes_polygons", "baseline_paths", "crosswalks")
    for name in moved:
        geoms = shapely.transform(
            np.asarray(utm[name].geometry, dtype=object),
            lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])),
        )
        lonlat[name] = LayerTable(fields=utm[name].fields, geometry=list(geoms))
    wkt = CRS.from_epsg(vegas.epsg).to_wkt()
    lonlat["meta"] = LayerTable(fields={"key": [PROJECTED_CRS_KEY], "value": [wkt]})
    path = write_map_gpkg(
        tmp_path / "map.gpkg", lonlat, vegas, layer_crs=dict.fromkeys(moved, "EPSG:4326")
    )
    assert pyogrio.read_info(path, layer="lanes_polygons")["crs"] == "EPSG:4326"
    x, _ = vegas.utm_origin
    assert pyogrio.read_info(path, layer="lanes_polygons")["total_bounds"][0] < -100  # lon
    m = NuPlanMap.from_gpkg(path, vegas.name)
    assert m.crs.to_epsg() == vegas.epsg
    bp = utm["baseline_paths"]
    for row, fid in enumerate(m.lanes.fid):
        expected = np.asarray(geometry(bp, column_index(bp, "lane_fid", fid)).coords)
        np.testing.assert_allclose(m.lanes.centerline[row], expected, rtol=0, atol=0.01)
        assert shapely.equals_exact(
            m.lanes.polygon[row], geometry(utm["lanes_polygons"], fid), 0.01
        )
    assert shapely.equals_exact(m.crosswalks.polygon[0], geometry(utm["crosswalks"], 601), 0.01)
    assert m.lanes.centerline[0][0, 0] == pytest.approx(x, abs=1.0)


def test_meta_crs_as_wkt_or_epsg(tmp_path: Path) -> None:
    sg = LOCATIONS["sg-one-north"]
    for value in (CRS.from_epsg(sg.epsg).to_wkt(), f"EPSG:{sg.epsg}"):
        layers = dict(
            make_map_layers(sg),
            meta=LayerTable(fields={"key": [PROJECTED_CRS_KEY, "x"], "value": [value, "1"]}),
        )
        m = NuPlanMap.from_gpkg(write_map_gpkg(tmp_path / "map.gpkg", layers, sg), sg.name)
        assert m.crs.to_epsg() == sg.epsg
        np.testing.assert_allclose(m.lanes.centerline[m.lanes.row(11)][0], sg.utm_origin)


def test_numeric_ids_stored_as_text_or_real_are_coerced(root: Path, tmp_path: Path) -> None:
    def edit(layer, names, arrays):
        if layer == "lanes_polygons":
            i = names.index("lane_group_fid")
            arrays[i] = np.array([f" {v} " for v in arrays[i]], dtype=object)
        if layer == "lane_connectors":
            i = names.index("exit_lane_fid")
            arrays[i] = arrays[i].astype(np.float64)
        return names, arrays

    path = gpkg(root)
    rewrite_gpkg(path, tmp_path / "map.gpkg", edit=edit)
    assert pyogrio.read_info(tmp_path / "map.gpkg", layer="lanes_polygons")["dtypes"][2] == "object"
    m = NuPlanMap.from_gpkg(tmp_path / "map.gpkg", BOSTON.name)
    assert m.lanes.lane_group_fid.tolist() == [101, 101, 102, 103, 104]
    assert m.lane_connectors.exit_lane_fid.dtype == np.int64
    assert m.outgoing_connectors(11).tolist() == [21, 22]
    assert m.lane_connectors.intersection_fid.tolist() == [401, 401]


# -------------------------------------------------------------------------------- maps root


def test_load_is_cached_per_root_and_location(written_root: Path) -> None:
    a = MapsRoot(written_root).load(BOSTON.name)
    assert MapsRoot(written_root).load(BOSTON.name) is a
    b = MapsRoot(written_root).load("sg-one-north")
    assert b is not a and b.location == "sg-one-north"
    np.testing.assert_allclose(
        b.lanes.centerline[0][0], np.array(LOCATIONS["sg-one-north"].utm_origin) + [0, -3.5]
    )


def test_every_location_loads(written_root: Path) -> None:
    maps_root = MapsRoot(written_root)
    assert maps_root.versions == {n: loc.version for n, loc in LOCATIONS.items()}
    for name, loc in LOCATIONS.items():
        m = maps_root.load(name)
        assert m.crs.to_epsg() == loc.epsg
        assert len(m.lanes) == 5 and len(m.lane_connectors) == 2


FIX_ROOT = ("NUPLAN_MAPS_ROOT", "data.maps_root", "pluto-dvc synthesize")


def assert_data_error(excinfo: pytest.ExceptionInfo, *words: str) -> None:
    message = str(excinfo.value)
    for word in words:
        assert word in message, (word, message)


def test_missing_root_and_json(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DataError) as e:
        MapsRoot(tmp_path / "nowhere")
    assert_data_error(e, "does not exist", *FIX_ROOT)
    (root / MAPS_VERSION_JSON).unlink()
    with pytest.raises(DataError) as e:
        MapsRoot(root)
    assert_data_error(e, f"has no {MAPS_VERSION_JSON}", str(root), *FIX_ROOT)


def test_unparseable_json(root: Path) -> None:
    (root / MAPS_VERSION_JSON).write_text("{not json")
    with pytest.raises(DataError) as e:
        MapsRoot(root)
    assert_data_error(e, "not valid json", *FIX_ROOT)


def test_json_missing_a_location(root: Path) -> None:
    path = root / MAPS_VERSION_JSON
    metadata = json.loads(path.read_text())
    del metadata["sg-one-north"]
    path.write_text(json.dumps(metadata))
    with pytest.raises(DataError) as e:
        MapsRoot(root)
    assert_data_error(e, "no version for map location 'sg-one-north'", "all four", *FIX_ROOT)


def test_missing_gpkg(root: Path) -> None:
    path = gpkg(root, "us-pa-pittsburgh-hazelwood")
    path.unlink()
    with pytest.raises(DataError) as e:
        MapsRoot(root)
    assert_data_error(e, str(path), "is missing", "9.17.1937", *FIX_ROOT)


def test_unknown_location(root: Path) -> None:
    with pytest.raises(DataError) as e:
        MapsRoot(root).load("us-ca-nowhere")
    assert_data_error(e, "unknown map location 'us-ca-nowhere'", *LOCATIONS)


@pytest.mark.parametrize("layer", ["crosswalks", "baseline_paths", META_LAYER])
def test_gpkg_missing_a_required_layer(root: Path, tmp_path: Path, layer: str) -> None:
    path = gpkg(root)
    rewrite_gpkg(path, tmp_path / "map.gpkg", drop_layers=(layer,))
    shutil.copyfile(tmp_path / "map.gpkg", path)
    with pytest.raises(DataError) as e:
        MapsRoot(root).load(BOSTON.name)
    assert_data_error(e, str(path), f"lacks layer(s) {layer}", "pluto-dvc synthesize")


def test_layer_missing_a_column(root: Path, tmp_path: Path) -> None:
    def edit(layer, names, arrays):
        if layer == "lanes_polygons":
            i = names.index("speed_limit_mps")
            return names[:i] + names[i + 1 :], arrays[:i] + arrays[i + 1 :]
        return names, arrays

    rewrite_gpkg(gpkg(root), tmp_path / "map.gpkg", edit=edit)
    with pytest.raises(DataError) as e:
        NuPlanMap.from_gpkg(tmp_path / "map.gpkg", BOSTON.name)
    assert_data_error(e, "layer 'lanes_polygons' lacks column(s) speed_limit_mps")


def test_lane_without_centreline(tmp_path: Path, layers: dict) -> None:
    bp = layers["baseline_paths"]
    keep = [i for i, v in enumerate(bp.fields["lane_fid"]) if v != 12]
    broken = dict(layers)
    broken["baseline_paths"] = LayerTable(
        fields={k: [v[i] for i in keep] for k, v in bp.fields.items()},
        geometry=[bp.geometry[i] for i in keep],
    )
    path = write_map_gpkg(tmp_path / "map.gpkg", broken, BOSTON)
    with pytest.raises(DataError) as e:
        NuPlanMap.from_gpkg(path, BOSTON.name)
    assert_data_error(e, "lane(s) [12]", "no centreline", "baseline_paths")


def test_duplicate_baseline_path_lowest_fid_wins(tmp_path: Path, layers: dict) -> None:
    bp = layers["baseline_paths"]
    extra = shapely.LineString([(X0 + 70, Y0 + 1), (X0 + 120, Y0 + 1)])
    doubled = dict(layers)
    doubled["baseline_paths"] = LayerTable(
        fields={
            "fid": [*bp.fields["fid"], 1, 99_999],
            "lane_fid": [*bp.fields["lane_fid"], None, 12],
            "lane_connector_fid": [*bp.fields["lane_connector_fid"], 21, None],
        },
        geometry=[*bp.geometry, shapely.LineString([(X0 + 50, Y0 + 1), (X0 + 70, Y0 + 1)]), extra],
    )
    m = NuPlanMap.from_gpkg(write_map_gpkg(tmp_path / "map.gpkg", doubled, BOSTON), BOSTON.name)
    assert m.lanes.centerline[m.lanes.row(12)][0, 1] == pytest.approx(Y0)  # fid 10012 < 99999
    conn = m.lane_connectors.centerline[m.lane_connectors.row(21)]  # fid 1 < 20021
    np.testing.assert_allclose(conn, [[X0 + 50, Y0 + 1], [X0 + 70, Y0 + 1]])


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_gpkg(root: Path, keep: float) -> None:
    path = gpkg(root)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    maps_root = MapsRoot(root)  # presence is all the root checks
    with pytest.raises(DataError) as e:
        maps_root.load(BOSTON.name)
    assert_data_error(e, str(path), "truncated", "re-download")


def test_garbage_gpkg(root: Path) -> None:
    path = gpkg(root)
    path.write_bytes(b"\x00not a geopackage" * 64)
    with pytest.raises(DataError) as e:
        MapsRoot(root).load(BOSTON.name)
    assert_data_error(e, str(path), "not a GeoPackage")


# ------------------------------------------------------------------------------------ writer


def test_writer_rejects_bad_layers(tmp_path: Path, layers: dict) -> None:
    path = tmp_path / "map.gpkg"
    with pytest.raises(ValueError, match="unknown map layer"):
        write_map_gpkg(path, {"lanes": layers["lanes_polygons"]}, BOSTON)
    lanes = layers["lanes_polygons"]
    no_speed = LayerTable(
        {k: v for k, v in lanes.fields.items() if k != "speed_limit_mps"}, lanes.geometry
    )
    with pytest.raises(ValueError, match="speed_limit_mps"):
        write_map_gpkg(path, {"lanes_polygons": no_speed}, BOSTON)
    dup = LayerTable({**lanes.fields, "fid": [1] * len(lanes)}, lanes.geometry)
    with pytest.raises(ValueError, match="duplicate fids"):
        write_map_gpkg(path, {"lanes_polygons": dup}, BOSTON)
    lines = LayerTable(lanes.fields, [shapely.boundary(g) for g in lanes.geometry])
    with pytest.raises(ValueError, match="non-Polygon"):
        write_map_gpkg(path, {"lanes_polygons": lines}, BOSTON)
    null_id = LayerTable({**lanes.fields, "lane_group_fid": [None] * len(lanes)}, lanes.geometry)
    with pytest.raises(ValueError, match="may not be null"):
        write_map_gpkg(path, {"lanes_polygons": null_id}, BOSTON)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_writer_replaces_atomically_and_writes_missing_layers_empty(
    tmp_path: Path, layers: dict
) -> None:
    path = write_map_gpkg(tmp_path / "map.gpkg", {"crosswalks": layers["crosswalks"]}, BOSTON)
    assert pyogrio.read_info(path, layer="lanes_polygons")["features"] == 0
    assert pyogrio.read_info(path, layer="crosswalks")["features"] == 1
    write_map_gpkg(path, layers, BOSTON)
    assert pyogrio.read_info(path, layer="lanes_polygons")["features"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.gpkg"]
    with pytest.raises(ValueError, match="unknown map location"):
        write_maps_root(tmp_path, {"mars": layers})


def test_map_with_empty_layers_loads(tmp_path: Path) -> None:
    m = NuPlanMap.from_gpkg(write_map_gpkg(tmp_path / "map.gpkg", {}, BOSTON), BOSTON.name)
    assert len(m.lanes) == 0 and len(m.lane_connectors) == 0 and len(m.roadblocks) == 0
    assert m.lanes.centerline.points.shape == (0, 2)
    assert m.nearest_lane(X0, Y0) is None
    assert all(v.size == 0 for v in m.query_radius(X0, Y0, 100.0).values())
    assert m.drivable_area.union.is_empty
    assert repr(m).startswith("NuPlanMap('us-ma-boston', 0 lanes, 0 connectors")


# ------------------------------------------------------------------------------- records


def test_polylines_helpers() -> None:
    lines = Polylines.from_geometries(
        [shapely.LineString([(0, 0), (1, 0), (2, 0)]), None, shapely.LineString([(5, 5), (5, 6)])]
    )
    lines.validate()
    assert lines.offsets.tolist() == [0, 3, 3, 5]
    assert lines[1].shape == (0, 2)
    flipped = lines.reversed_where(np.array([True, False, False]))
    assert flipped[0][:, 0].tolist() == [2, 1, 0] and flipped[2].tolist() == [[5, 5], [5, 6]]
    assert lines.take(np.array([2, 0])).offsets.tolist() == [0, 2, 5]
    geoms = lines.linestrings()
    assert geoms[1] is None and geoms[2].equals(shapely.LineString([(5, 5), (5, 6)]))


def test_validate_catches_bad_records(written_root: Path) -> None:
    m = NuPlanMap.from_gpkg(gpkg(written_root), BOSTON.name)
    m.lanes.lane_index = m.lanes.lane_index.astype(np.int32)
    with pytest.raises(ValueError, match="lane_index has dtype int32"):
        m.validate()
    m = NuPlanMap.from_gpkg(gpkg(written_root), BOSTON.name)
    m.lane_connectors.stop_line_offsets = m.lane_connectors.stop_line_offsets[:-1]
    with pytest.raises(ValueError, match="offsets"):
        m.validate()
    assert NULL_FID == -1


# -------------------------------------------------------------------------------- timing


def test_a_500_lane_map_opens_and_answers_queries(tmp_path: Path) -> None:
    """Speed is measured in benchmarks/bench_maps.py; here only that a big map works."""
    loc = LOCATIONS["us-nv-las-vegas-strip"]
    path = write_map_gpkg(tmp_path / "map.gpkg", make_grid_layers(loc, rows=25, cols=10), loc)
    m = NuPlanMap.from_gpkg(path, loc.name)
    assert len(m.lanes) == 500 and len(m.lane_connectors) == 450
    x0, y0 = loc.utm_origin
    assert len(m.query_radius(x0 + 100.0, y0 + 100.0, 30.0)["lane"]) > 0
    assert m.nearest_lane(x0 + 100.0, y0 + 100.0, heading=0.0) is not None
