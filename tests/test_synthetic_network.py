"""Synthetic road network: determinism, geometry, connectivity, signals and the nuPlan map layers."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point

from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.map_schema import LAYERS
from pluto_dvc.synthetic.map_layers import STOP_POLYGON_TYPE_FIDS, network_to_layers
from pluto_dvc.synthetic.network import RoadNetwork
from pluto_dvc.synthetic.road_network import (
    NETWORK_SIZES,
    TINY,
    NetworkSize,
    generate_road_network,
    lane_pairs,
)

LOCATION = "us-pa-pittsburgh-hazelwood"
SEED = 7


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return generate_road_network(LOCATION, SEED, TINY)


@pytest.fixture(scope="module")
def default_net() -> RoadNetwork:
    return generate_road_network(LOCATION, SEED, NETWORK_SIZES["default"])


def _heading(points: np.ndarray, at_end: bool) -> np.ndarray:
    """Unit tangent at the first or last point (second-order one-sided difference)."""
    p = points[::-1] if at_end else points
    d = -3 * p[0] + 4 * p[1] - p[2]
    d = -d if at_end else d
    return d / np.linalg.norm(d)


def _turn_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.atan2(a[0] * b[1] - a[1] * b[0], float(a @ b)))


def _arrays(net: RoadNetwork) -> list[np.ndarray]:
    out = [net.lanes[f].centerline for f in sorted(net.lanes)]
    out += [net.connectors[f].centerline for f in sorted(net.connectors)]
    out += [np.asarray(p.exterior.coords) for p in net.walkways.values()]
    return out


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_network(net: RoadNetwork) -> None:
    again = generate_road_network(LOCATION, SEED, TINY)
    assert sorted(again.lanes) == sorted(net.lanes)
    assert sorted(again.connectors) == sorted(net.connectors)
    for a, b in zip(_arrays(again), _arrays(net), strict=True):
        np.testing.assert_array_equal(a, b)
    for fid, inter in net.intersections.items():
        assert again.intersections[fid].signal == inter.signal


def test_other_seed_or_location_gives_another_network(net: RoadNetwork) -> None:
    other = generate_road_network(LOCATION, SEED + 1, TINY)
    first = min(net.lanes)
    shift = np.linalg.norm(other.lanes[first].centerline[0] - net.lanes[first].centerline[0])
    assert shift > 0.1
    elsewhere = generate_road_network("sg-one-north", SEED, TINY)
    x0, y0 = LOCATIONS["sg-one-north"].utm_origin
    centre = np.mean([ln.centerline.mean(axis=0) for ln in elsewhere.lanes.values()], axis=0)
    assert np.hypot(centre[0] - x0, centre[1] - y0) < 50.0


def test_bad_size_and_location_are_rejected() -> None:
    with pytest.raises(ValueError, match="block_length_m"):
        NetworkSize(block_length_m=40.0)
    with pytest.raises(ValueError, match="cols, rows"):
        NetworkSize(cols=1)
    with pytest.raises(ValueError, match="unknown location"):
        generate_road_network("us-ca-nowhere", 0, TINY)


# --------------------------------------------------------------------------------- geometry


def test_polygons_are_valid_and_not_degenerate(net: RoadNetwork) -> None:
    w = TINY.lane_width_m
    for obj in [*net.lanes.values(), *net.connectors.values()]:
        poly = obj.polygon
        assert poly.is_valid, obj.fid
        length = LineString(obj.centerline).length
        assert length > 5.0
        assert poly.area == pytest.approx(length * w, rel=0.03), obj.fid  # width * length
    others = [
        *(g.polygon for g in net.lane_groups.values()),
        *(g.polygon for g in net.lane_group_connectors.values()),
        *(i.polygon for i in net.intersections.values()),
        *(c.polygon for c in net.crosswalks.values()),
        *(s.polygon for s in net.stop_polygons.values()),
        *net.walkways.values(),
        *net.road_segments.values(),
        *net.carpark_areas.values(),
    ]
    assert all(p.geom_type == "Polygon" and p.is_valid and p.area > 1.0 for p in others)


def test_centreline_and_boundary_spacing(net: RoadNetwork) -> None:
    """Centrelines are 0.2-0.3 m dense; boundaries share their N (so a tight turn's outer
    boundary is a little sparser and its inner one denser)."""
    for obj in [*net.lanes.values(), *net.connectors.values()]:
        step = np.linalg.norm(np.diff(obj.centerline, axis=0), axis=1)
        assert step.min() >= 0.2 and step.max() <= 0.3, obj.fid
        for side in (obj.left_boundary, obj.right_boundary):
            step = np.linalg.norm(np.diff(side, axis=0), axis=1)
            assert step.min() >= 0.12 and step.max() <= 0.38, obj.fid
        assert obj.centerline.shape == obj.left_boundary.shape == obj.right_boundary.shape
        # boundaries lie half a lane width either side of the centreline
        half = 0.5 * TINY.lane_width_m
        for side in (obj.left_boundary, obj.right_boundary):
            dist = np.linalg.norm(side - obj.centerline, axis=1)
            np.testing.assert_allclose(dist, half, atol=1e-6)


def test_boundaries_are_registered(net: RoadNetwork) -> None:
    for obj in [*net.lanes.values(), *net.connectors.values()]:
        np.testing.assert_array_equal(net.boundaries[obj.left_boundary_fid], obj.left_boundary)
        np.testing.assert_array_equal(net.boundaries[obj.right_boundary_fid], obj.right_boundary)


def test_connectors_join_their_lanes_smoothly(net: RoadNetwork) -> None:
    for c in net.connectors.values():
        exit_lane, entry_lane = net.lanes[c.exit_lane_fid], net.lanes[c.entry_lane_fid]
        assert np.linalg.norm(c.centerline[0] - exit_lane.centerline[-1]) < 0.01
        assert np.linalg.norm(c.centerline[-1] - entry_lane.centerline[0]) < 0.01
        turn_in = _turn_deg(_heading(exit_lane.centerline, True), _heading(c.centerline, False))
        turn_out = _turn_deg(_heading(c.centerline, True), _heading(entry_lane.centerline, False))
        assert abs(turn_in) < 0.5 and abs(turn_out) < 0.5, c.fid
        # boundaries continue the lane boundaries too
        assert np.linalg.norm(c.left_boundary[0] - exit_lane.left_boundary[-1]) < 0.01
        assert np.linalg.norm(c.right_boundary[-1] - entry_lane.right_boundary[0]) < 0.01


def test_turn_labels_match_geometry_and_lanes(net: RoadNetwork) -> None:
    for c in net.connectors.values():
        exit_lane, entry_lane = net.lanes[c.exit_lane_fid], net.lanes[c.entry_lane_fid]
        delta = _turn_deg(
            _heading(exit_lane.centerline, True), _heading(entry_lane.centerline, False)
        )
        expected = "straight" if abs(delta) < 45 else ("left" if delta > 0 else "right")
        assert c.turn == expected, (c.fid, delta)
        n_exit = len(net.lane_groups[exit_lane.lane_group_fid].lane_fids)
        if c.turn == "straight":
            assert exit_lane.lane_index == entry_lane.lane_index
        elif c.turn == "left" and exit_lane.lane_index == 0:
            assert entry_lane.lane_index == 0
        elif c.turn == "right" and exit_lane.lane_index == n_exit - 1:
            n_entry = len(net.lane_groups[entry_lane.lane_group_fid].lane_fids)
            assert entry_lane.lane_index == n_entry - 1


def test_every_approach_reaches_every_other_arm(net: RoadNetwork) -> None:
    """From each approach a connector to every other arm (no U-turn); left, straight and right
    at every four-way junction."""
    four_way = 0
    for fid in net.intersections:
        conns = [c for c in net.connectors.values() if c.intersection_fid == fid]
        group = {
            c.fid: (
                net.lanes[c.exit_lane_fid].lane_group_fid,
                net.lanes[c.entry_lane_fid].lane_group_fid,
            )
            for c in conns
        }
        approaches = {a for a, _ in group.values()}
        exits = {b for _, b in group.values()}
        n = len(approaches)
        assert n >= 2 and len(exits) == n  # two-way streets: one exit per approach
        pairs = set(group.values())
        assert len(pairs) == n * (n - 1)
        segment = {g: net.lane_groups[g].road_segment_fid for g in approaches | exits}
        assert all(segment[a] != segment[b] for a, b in pairs)  # no U-turns
        turns, lane_turns = defaultdict(set), defaultdict(set)
        for c in conns:
            turns[group[c.fid][0]].add(c.turn)
            lane_turns[c.exit_lane_fid].add(c.turn)
        for a in approaches:  # left from the leftmost lane, straight from all, right from the
            lanes = net.lane_groups[a].lane_fids  # rightmost; every lane has a move
            assert all(lane_turns[f] for f in lanes)
            if "straight" in turns[a]:
                assert all("straight" in lane_turns[f] for f in lanes)
            assert "left" not in turns[a] or "left" in lane_turns[lanes[0]]
            assert "right" not in turns[a] or "right" in lane_turns[lanes[-1]]
        if n == 4:
            four_way += 1
            assert all(t == {"left", "straight", "right"} for t in turns.values())
        if n == 2:  # a corner: one turn, the same way from both approaches
            assert all(len(t) == 1 and t <= {"left", "right"} for t in turns.values())
    assert four_way >= 1


def test_lane_group_connectors_group_connectors(net: RoadNetwork) -> None:
    seen = []
    for g in net.lane_group_connectors.values():
        for fid in g.connector_fids:
            c = net.connectors[fid]
            assert c.lane_group_connector_fid == g.fid
            assert net.lanes[c.exit_lane_fid].lane_group_fid == g.from_lane_group_fid
            assert net.lanes[c.entry_lane_fid].lane_group_fid == g.to_lane_group_fid
            seen.append(fid)
    assert sorted(seen) == sorted(net.connectors)


def test_lane_groups_hold_lanes_left_to_right(net: RoadNetwork) -> None:
    assert any(len(g.lane_fids) > 1 for g in net.lane_groups.values())
    for g in net.lane_groups.values():
        lanes = [net.lanes[f] for f in g.lane_fids]
        for i, lane in enumerate(lanes):
            assert lane.lane_group_fid == g.fid and lane.lane_index == i
            assert lane.left_lane_fid == (lanes[i - 1].fid if i > 0 else None)
            assert lane.right_lane_fid == (lanes[i + 1].fid if i + 1 < len(lanes) else None)
        for left, right in zip(lanes, lanes[1:], strict=False):
            assert left.right_boundary_fid == right.left_boundary_fid
            mid = len(left.centerline) // 2
            tangent = _heading(left.centerline[: mid + 1], True)
            offset = right.centerline[mid] - left.centerline[mid]
            assert tangent[0] * offset[1] - tangent[1] * offset[0] < -3.0  # right lies to the right
        assert g.polygon.area == pytest.approx(sum(ln.polygon.area for ln in lanes), rel=0.01)


# ----------------------------------------------------------------------------- connectivity


def test_every_lane_continues_and_is_reachable(net: RoadNetwork) -> None:
    for fid in net.lanes:
        assert net.outgoing(fid), f"lane {fid} is a dead end"
        assert net.incoming(fid), f"lane {fid} cannot be reached"


def test_random_walks_never_get_stuck(net: RoadNetwork) -> None:
    rng = np.random.default_rng(0)
    successors = defaultdict(list)
    for c in net.connectors.values():
        successors[c.exit_lane_fid].append(c.entry_lane_fid)
    visited = set()
    for start in sorted(net.lanes):
        lane = start
        for _ in range(50):
            options = successors[lane]
            assert options, f"walk from {start} stuck at lane {lane}"
            lane = options[int(rng.integers(len(options)))]
            visited.add(lane)
    assert len(visited) > 0.8 * len(net.lanes)


def test_default_size_is_a_district(default_net: RoadNetwork) -> None:
    assert len(default_net.lanes) + len(default_net.connectors) >= 300
    assert (
        len(default_net.intersections)
        == NETWORK_SIZES["default"].cols * NETWORK_SIZES["default"].rows
    )
    assert all(default_net.outgoing(f) for f in default_net.lanes)
    widths = {len(g.lane_fids) for g in default_net.lane_groups.values()}
    assert 2 in widths


def test_some_segments_are_curved(default_net: RoadNetwork) -> None:
    def max_heading_change(line: np.ndarray) -> float:
        d = np.diff(line, axis=0)
        h = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        return float(np.degrees(h.max() - h.min()))

    changes = np.array([max_heading_change(ln.centerline) for ln in default_net.lanes.values()])
    assert (changes < 0.01).sum() > 0.3 * len(changes)  # straight ones
    assert (changes > 5.0).sum() > 0.1 * len(changes)  # and bends


def test_lane_pairs_cover_every_lane() -> None:
    full = lane_pairs(2, {"left": 2, "straight": 2, "right": 2})
    assert sorted(full) == [("left", 0, 0), ("right", 1, 1), ("straight", 0, 0), ("straight", 1, 1)]
    assert sorted(lane_pairs(2, {"left": 2})) == [("left", 0, 0), ("left", 1, 1)]
    assert sorted(lane_pairs(2, {"left": 1, "right": 2})) == [("left", 0, 0), ("right", 1, 1)]
    assert sorted(lane_pairs(1, {"left": 2, "right": 2})) == [("left", 0, 0), ("right", 0, 1)]


# ---------------------------------------------------------------------------------- signals


def _phase_states(net: RoadNetwork, fid: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    signal = net.intersections[fid].signal
    t = np.arange(0.0, 2 * signal.cycle_s, 0.05)
    conns = [c for c in net.connectors.values() if c.intersection_fid == fid]
    return t, {c.fid: net.signal_status(c.fid, t) != "red" for c in conns}


def test_one_protected_phase_per_approach(net: RoadNetwork) -> None:
    for fid, inter in net.intersections.items():
        signal = inter.signal
        assert signal is not None
        assert 12.0 <= signal.green_s <= 20.0 and signal.yellow_s == 3.0
        assert 1.0 <= signal.all_red_s <= 2.0 and 0 <= signal.offset_s < signal.cycle_s
        conns = [c for c in net.connectors.values() if c.intersection_fid == fid]
        phase_of_group = defaultdict(set)
        for c in conns:
            phase_of_group[net.lanes[c.exit_lane_fid].lane_group_fid].add(c.signal_phase)
        assert all(len(p) == 1 for p in phase_of_group.values())
        phases = sorted(p for s in phase_of_group.values() for p in s)
        assert phases == list(range(signal.num_phases))
        t = np.arange(0.0, 2 * signal.cycle_s, 0.05)
        active = np.stack([signal.status(k, t) != "red" for k in range(signal.num_phases)])
        assert active.sum(axis=0).max() == 1
        assert active.any(axis=1).all()  # every approach gets its turn


def test_crossing_connectors_never_green_together(net: RoadNetwork) -> None:
    checked = 0
    for fid in net.intersections:
        t, active = _phase_states(net, fid)
        conns = [c for c in net.connectors.values() if c.intersection_fid == fid]
        for a, b in combinations(conns, 2):
            if a.exit_lane_fid == b.exit_lane_fid or a.entry_lane_fid == b.entry_lane_fid:
                continue
            if LineString(a.centerline).intersects(LineString(b.centerline)):
                checked += 1
                assert not (active[a.fid] & active[b.fid]).any(), (a.fid, b.fid)
    assert checked > 20


# -------------------------------------------------------------------- stops, crossings, areas


def test_stop_polygons_sit_at_lane_ends(net: RoadNetwork) -> None:
    assert len(net.stop_polygons) == len(net.lanes)
    by_lane = {}
    for stop in net.stop_polygons.values():
        assert stop.kind == "traffic_light"
        exits = {net.connectors[f].exit_lane_fid for f in stop.connector_fids}
        assert len(exits) == 1
        by_lane[exits.pop()] = stop
    for fid, lane in net.lanes.items():
        stop = by_lane[fid]
        assert sorted(stop.connector_fids) == sorted(c.fid for c in net.outgoing(fid))
        assert all(net.connectors[c].stop_line_fid == stop.fid for c in stop.connector_fids)
        assert stop.polygon.distance(Point(lane.centerline[-1])) < 1e-6
        assert stop.polygon.intersection(lane.polygon).area < 1e-6  # beyond the lane end
        box = net.intersections[net.connectors[stop.connector_fids[0]].intersection_fid].polygon
        assert not stop.polygon.intersects(box)


def test_crosswalks_lie_between_stop_lines_and_box(net: RoadNetwork) -> None:
    walkways = shapely.union_all(list(net.walkways.values()))
    stops = shapely.union_all([s.polygon for s in net.stop_polygons.values()])
    lanes = shapely.union_all([ln.polygon for ln in net.lanes.values()])
    approaches = defaultdict(set)
    for c in net.connectors.values():
        approaches[c.intersection_fid].add(net.lanes[c.exit_lane_fid].lane_group_fid)
    per_node = Counter(cw.intersection_fid for cw in net.crosswalks.values())
    assert per_node == {fid: len(groups) for fid, groups in approaches.items()}  # one per arm
    for cw in net.crosswalks.values():
        box = net.intersections[cw.intersection_fid].polygon
        assert cw.polygon.intersection(box).area < 1e-6
        assert 0.0 < cw.polygon.distance(box) < 1.0
        assert cw.polygon.intersection(stops).area < 1e-6
        assert cw.polygon.intersection(lanes).area < 1e-6
        assert cw.walk_path.shape == (2, 2)
        width = np.linalg.norm(cw.walk_path[1] - cw.walk_path[0])
        assert width >= 2 * TINY.side_street_lanes * TINY.lane_width_m - 1e-6
        for end in cw.walk_path:  # both ends on a sidewalk
            assert walkways.distance(Point(end)) < 1e-6


def test_sidewalks_and_carparks_stay_off_the_road(net: RoadNetwork) -> None:
    drivable = shapely.union_all(
        [ln.polygon for ln in net.lanes.values()]
        + [c.polygon for c in net.connectors.values()]
        + [i.polygon for i in net.intersections.values()]
    )
    for walk in net.walkways.values():
        assert walk.intersection(drivable).area < 0.05
    assert len(net.carpark_areas) == TINY.num_carparks
    for carpark in net.carpark_areas.values():
        assert not carpark.intersects(drivable)
        assert carpark.distance(drivable) < 10.0  # beside a road


def test_road_segments_cover_both_directions(net: RoadNetwork) -> None:
    by_segment = defaultdict(list)
    for g in net.lane_groups.values():
        by_segment[g.road_segment_fid].append(g)
    assert set(by_segment) == set(net.road_segments)
    for fid, groups in by_segment.items():
        assert len(groups) == 2
        both = sum(g.polygon.area for g in groups)
        assert net.road_segments[fid].area == pytest.approx(both, rel=0.01)


def test_speed_limits(net: RoadNetwork) -> None:
    lane_speeds = np.array([ln.speed_limit_mps for ln in net.lanes.values()])
    assert lane_speeds.min() >= 8.0 and lane_speeds.max() <= 17.0
    for c in net.connectors.values():
        road = min(
            net.lanes[c.exit_lane_fid].speed_limit_mps, net.lanes[c.entry_lane_fid].speed_limit_mps
        )
        assert 3.0 <= c.speed_limit_mps <= road
        if c.turn != "straight":
            assert c.speed_limit_mps < 9.0


def test_fids_are_unique_across_the_network(net: RoadNetwork) -> None:
    groups = [
        net.lanes,
        net.connectors,
        net.lane_groups,
        net.lane_group_connectors,
        net.intersections,
        net.crosswalks,
        net.stop_polygons,
        net.boundaries,
        net.walkways,
        net.carpark_areas,
        net.road_segments,
    ]
    fids = [f for g in groups for f in g]
    assert len(fids) == len(set(fids))


# --------------------------------------------------------------------------------- layers


def test_layers_have_the_schema_columns_and_one_row_per_feature(net: RoadNetwork) -> None:
    layers = network_to_layers(net)
    assert set(layers) == set(LAYERS)
    for name, table in layers.items():
        schema = LAYERS[name]
        assert set(table.fields) == set(schema.column_names), name
        assert all(len(v) == len(table) for v in table.fields.values()), name
        types = {g.geom_type for g in table.geometry}
        assert types <= {schema.geometry_type}, name
        assert len(np.unique(table.fields["fid"])) == len(table), name
    counts = {
        "lanes_polygons": len(net.lanes),
        "lane_connectors": len(net.connectors),
        "gen_lane_connectors_scaled_width_polygons": len(net.connectors),
        "baseline_paths": len(net.lanes) + len(net.connectors),
        "boundaries": len(net.boundaries),
        "lane_groups_polygons": len(net.lane_groups),
        "lane_group_connectors": len(net.lane_group_connectors),
        "intersections": len(net.intersections),
        "crosswalks": len(net.crosswalks),
        "walkways": len(net.walkways),
        "carpark_areas": len(net.carpark_areas),
        "road_segments": len(net.road_segments),
        "stop_polygons": len(net.stop_polygons),
        "traffic_lights": len(net.connectors),
        "dubins_nodes": 0,
    }
    assert {k: len(layers[k]) for k in counts} == counts


def test_layer_values_match_the_network(net: RoadNetwork) -> None:
    layers = network_to_layers(net)
    lanes = layers["lanes_polygons"].fields
    for k, fid in enumerate(lanes["fid"]):
        lane = net.lanes[int(fid)]
        assert lanes["lane_fid"][k] == fid and lanes["lane_index"][k] == lane.lane_index
        assert lanes["lane_group_fid"][k] == lane.lane_group_fid
        assert lanes["left_boundary_fid"][k] == lane.left_boundary_fid
        assert lanes["speed_limit_mps"][k] == lane.speed_limit_mps
    conns = layers["lane_connectors"]
    for k, fid in enumerate(conns.fields["fid"]):
        c = net.connectors[int(fid)]
        assert conns.fields["exit_lane_fid"][k] == c.exit_lane_fid
        assert conns.fields["entry_lane_fid"][k] == c.entry_lane_fid
        assert conns.fields["traffic_light_stop_line_fids"][k] == str(c.stop_line_fid)
        np.testing.assert_array_equal(np.asarray(conns.geometry[k].coords), c.centerline)
    paths = layers["baseline_paths"].fields
    is_lane = ~np.isnan(paths["lane_fid"])
    assert (is_lane ^ ~np.isnan(paths["lane_connector_fid"])).all()
    assert sorted(paths["lane_fid"][is_lane].astype(int)) == sorted(net.lanes)
    stops = layers["stop_polygons"].fields["stop_polygon_type_fid"]
    assert set(stops.tolist()) == {STOP_POLYGON_TYPE_FIDS["traffic_light"]}
    lights = layers["traffic_lights"]
    for fid, point in zip(lights.fields["lane_connector_fid"], lights.geometry, strict=True):
        assert point.distance(Point(net.connectors[int(fid)].centerline[0])) < 1e-9


def test_maps_root_round_trip(tmp_path, net: RoadNetwork) -> None:
    """The layers go through the GeoPackage writer and come back through the map reader."""
    from pluto_dvc.nuplan.map_reader import MapsRoot
    from pluto_dvc.nuplan.map_writer import write_maps_root

    tiny = dataclasses.replace(TINY, cols=2, rows=2)
    maps = {loc: network_to_layers(generate_road_network(loc, SEED, tiny)) for loc in LOCATIONS}
    maps[LOCATION] = network_to_layers(net)
    write_maps_root(tmp_path, maps)
    loaded = MapsRoot(tmp_path).load(LOCATION)
    assert len(loaded.lanes) == len(net.lanes)
    assert len(loaded.lane_connectors) == len(net.connectors)
    for fid in list(net.lanes)[:10]:
        expected = sorted(c.entry_lane_fid for c in net.outgoing(fid))
        assert sorted(loaded.successor_lanes(fid).tolist()) == expected
