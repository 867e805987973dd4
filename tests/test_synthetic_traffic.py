"""Synthetic traffic and the logs it becomes: plausible physics, nuPlan format, exact round trip."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import shapely

from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.log_schema import CATEGORY_NAMES, SCHEMA
from pluto_dvc.nuplan.map_reader import MapsRoot
from pluto_dvc.nuplan.scenarios import enumerate_scenarios
from pluto_dvc.nuplan.vehicle import EGO_LENGTH_M, EGO_REAR_AXLE_TO_CENTER_M, EGO_WIDTH_M
from pluto_dvc.reference import scenario_types
from pluto_dvc.synthetic.dataset import plan_logs, road_elements, road_network
from pluto_dvc.synthetic.nuplan_tables import GOAL_AHEAD_S, SCENE_S
from pluto_dvc.synthetic.simulation import simulate
from pluto_dvc.synthetic.tagger import frame_tags
from pluto_dvc.synthetic.traffic_agents import (
    BARRIER,
    BICYCLE,
    CONE,
    DT,
    GENERIC,
    KIND_CATEGORY,
    SIGN,
    VEHICLE,
    SimConfig,
)
from pluto_dvc.testing.synthetic_factory import tiny_synthetic_params

SPEED_MARGIN = 1.0  # m/s above the limit
MAX_ACCEL, MAX_DECEL, MAX_YAW_RATE = 2.0, 8.0, 1.0
STATIC_KINDS = [CONE, BARRIER, SIGN, GENERIC]


@pytest.fixture(scope="module")
def sim():
    network = road_network("us-nv-las-vegas-strip", 7, "tiny")
    config = SimConfig(duration_s=90.0, num_vehicles=16, num_pedestrians=8, num_cyclists=3, seed=5)
    return network, simulate(network, config, road_elements("us-nv-las-vegas-strip", 7, "tiny"))


def _box(x, y, h, length, width):
    c, s = np.cos(h), np.sin(h)
    pts = [(length / 2, width / 2), (-length / 2, width / 2), (-length / 2, -width / 2)]
    pts.append((length / 2, -width / 2))
    return shapely.Polygon([(x + c * a - s * b, y + s * a + c * b) for a, b in pts])


def _per_track_rates(result):
    """Speed, acceleration and yaw rate of every moving box between consecutive frames."""
    order = np.lexsort((result.box_frame, result.box_track))
    tr, fr, st = result.box_track[order], result.box_frame[order], result.box_state[order]
    same = (tr[1:] == tr[:-1]) & (fr[1:] == fr[:-1] + 1)
    speed = np.hypot(st[:, 6], st[:, 7])
    accel = np.diff(speed) / DT
    dh = (np.diff(st[:, 2]) + np.pi) % (2 * np.pi) - np.pi
    kind = result.track_kind[tr[:-1]]
    return same, accel, dh / DT, kind, speed


def test_no_two_boxes_overlap_at_any_frame(sim):
    network, result = sim
    assert result.num_frames == 1800 and len(result.box_frame) > 20 * 1800
    for i in range(0, result.num_frames, 2):
        rows = np.flatnonzero(result.box_frame == i)
        boxes = [_box(*result.box_state[r, [0, 1, 2, 4, 3]]) for r in rows]
        x, y, h = result.ego[i, :3]
        cx, cy = (
            x + EGO_REAR_AXLE_TO_CENTER_M * np.cos(h),
            y + EGO_REAR_AXLE_TO_CENTER_M * np.sin(h),
        )
        boxes.append(_box(cx, cy, h, EGO_LENGTH_M, EGO_WIDTH_M))
        tree = shapely.STRtree(boxes)
        a, b = tree.query(boxes, predicate="intersects")
        clash = a < b
        assert not clash.any(), f"frame {i}: boxes {a[clash]} and {b[clash]} overlap"


def test_static_objects_stand_in_carparks_or_beside_the_road_never_on_a_lane(sim):
    """Some statics are in carparks (drivable area, so PLUTO's static features see them)."""
    network, result = sim
    rows = np.flatnonzero(
        (result.box_frame == 0) & np.isin(result.track_kind[result.box_track], STATIC_KINDS)
    )
    boxes = [_box(*result.box_state[r, [0, 1, 2, 4, 3]]) for r in rows]
    lanes = shapely.union_all(
        [g.polygon for g in network.lane_groups.values()]
        + [c.polygon for c in network.lane_group_connectors.values()]
    )
    carparks = shapely.union_all(list(network.carpark_areas.values()))
    assert not any(box.intersects(lanes) for box in boxes)
    in_carpark = [box.intersects(carparks) for box in boxes]
    assert 0 < sum(in_carpark) < len(boxes)  # in carparks and on sidewalks


def test_speeds_stay_within_the_limit(sim):
    network, result = sim
    limits = {f: ln.speed_limit_mps for f, ln in network.lanes.items()}
    limits.update({f: c.speed_limit_mps for f, c in network.connectors.items()})
    moving = result.box_element >= 0
    speed = np.hypot(result.box_state[moving, 6], result.box_state[moving, 7])
    limit = np.array([limits[int(e)] for e in result.box_element[moving]])
    assert speed.max() > 5.0  # traffic does move
    assert np.all(speed <= limit + SPEED_MARGIN), (speed - limit).max()
    ego_limit = np.array([limits[int(e)] for e in result.ego_element])
    assert np.all(result.ego[:, 3] <= ego_limit + SPEED_MARGIN)


def test_accelerations_and_yaw_rates_are_human(sim):
    _, result = sim
    assert result.safety_stops == 0  # car-following alone kept every box apart (no hard stops)
    same, accel, yaw_rate, kind, _ = _per_track_rates(result)
    vehicles = same & np.isin(kind, [VEHICLE, BICYCLE])
    assert np.all(accel[vehicles] <= MAX_ACCEL + 1e-6), accel[vehicles].max()
    assert np.all(accel[vehicles] >= -MAX_DECEL), accel[vehicles].min()
    assert np.all(np.abs(yaw_rate[vehicles]) <= MAX_YAW_RATE), np.abs(yaw_rate[vehicles]).max()
    ego_a, ego_yaw = result.ego[1:, 5], result.ego[1:, 7]
    assert ego_a.max() <= MAX_ACCEL + 1e-6 and ego_a.min() >= -MAX_DECEL
    assert np.abs(ego_yaw).max() <= MAX_YAW_RATE


def test_vehicles_never_enter_a_connector_on_red(sim):
    """The front bumper of a vehicle never crosses a stop line while its light is red."""
    network, result = sim
    order = np.lexsort((result.box_frame, result.box_track))
    tr, fr, el = result.box_track[order], result.box_frame[order], result.box_element[order]
    st = result.box_state[order]
    enters = (tr[1:] == tr[:-1]) & (el[1:] != el[:-1]) & np.isin(el[1:], list(network.connectors))
    tracks, first_row = np.unique(tr, return_index=True)
    first_frame = dict(zip(tracks.tolist(), fr[first_row].tolist(), strict=True))
    entered = 0
    for k in np.flatnonzero(enters) + 1:
        conn = int(el[k])
        if network.connectors[conn].signal_phase is None:
            continue
        # the centre entered at frame fr[k]; the front crossed half a length earlier
        speed = max(np.hypot(st[k, 6], st[k, 7]), 0.1)
        front_frame = max(0, fr[k] - int(np.ceil(st[k, 4] / 2 / speed / DT)))
        first_seen = first_frame[tr[k]]
        if front_frame <= first_seen:
            continue  # spawned with its front already past the line
        status = str(network.signal_status(conn, front_frame * DT))
        assert status != "red", f"track {tr[k]} crossed into connector {conn} on red"
        entered += 1
    assert entered > 5  # the check saw real intersection entries
    # and vehicles do wait at red lights: stopped near the end of a lane whose connectors are red
    waiting = 0
    for k in np.flatnonzero(
        np.isin(el, list(network.lanes)) & (np.hypot(st[:, 6], st[:, 7]) < 0.1)
    ):
        lane = network.lanes[int(el[k])]
        if np.hypot(*(lane.centerline[-1] - st[k, :2])) > 12.0:
            continue
        outs = [c.fid for c in network.outgoing(lane.fid) if c.signal_phase is not None]
        if outs and all(str(network.signal_status(c, fr[k] * DT)) == "red" for c in outs):
            waiting += 1
    assert waiting > 0


def test_tags_are_nuplan_types_and_cover_at_least_ten(tiny_synthetic):
    types: set[str] = set()
    for path in tiny_synthetic.log_paths():
        types |= set(load_log(path).tags.type.tolist())
    assert types <= set(scenario_types())
    assert len(types) >= 10, sorted(types)


def test_generated_db_matches_the_schema_and_its_references_resolve(tiny_synthetic):
    path = tiny_synthetic.log_paths()[0]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table in SCHEMA.values():
            cols = [(r[1], r[2]) for r in con.execute(f"PRAGMA table_info({table.name})")]
            assert cols == [(c.name, c.sql_type) for c in table.columns], table.name
            for col in table.columns:
                if col.is_token:
                    bad = con.execute(
                        f"SELECT COUNT(*) FROM {table.name} WHERE {col.name} IS NOT NULL "
                        f"AND (typeof({col.name}) != 'blob' OR length({col.name}) != 8)"
                    ).fetchone()[0]
                    assert bad == 0, (table.name, col.name)
                if col.references:
                    dangling = con.execute(
                        f"SELECT COUNT(*) FROM {table.name} t WHERE t.{col.name} IS NOT NULL AND "
                        f"NOT EXISTS (SELECT 1 FROM {col.references} r WHERE r.token = t.{col.name})"
                    ).fetchone()[0]
                    assert dangling == 0, (table.name, col.name)
        stamps = np.array([r[0] for r in con.execute("SELECT timestamp FROM lidar_pc ORDER BY 1")])
        assert np.all(np.diff(stamps) == 50_000)  # 20 Hz
        ends = con.execute(
            "SELECT SUM(next_token IS NULL), SUM(prev_token IS NULL) FROM lidar_pc"
        ).fetchone()
        assert tuple(ends) == (1, 1)
        names = {r[0] for r in con.execute("SELECT name FROM category")}
        assert names == set(CATEGORY_NAMES)
    finally:
        con.close()


def test_round_trip_what_was_simulated_is_what_the_reader_returns(tiny_synthetic, tmp_path):
    params = tiny_synthetic_params(tiny_synthetic.data_root)
    job = plan_logs(params, tiny_synthetic.logs_dir)[0]
    network = road_network(job.location, params.seed, params.map_size)
    config = SimConfig(
        params.minutes_per_log * 60, params.num_vehicles, params.num_pedestrians,
        params.num_cyclists, job.seed,
    )  # fmt: skip
    result = simulate(network, config, road_elements(job.location, params.seed, params.map_size))
    log = load_log(job.path)

    assert log.meta.log_name == job.log_name and log.meta.location == job.location
    assert log.num_frames == result.num_frames
    np.testing.assert_allclose(log.ego.x, result.ego[:, 0], atol=1e-9)
    np.testing.assert_allclose(log.ego.y, result.ego[:, 1], atol=1e-9)
    dh = (log.ego.heading - result.ego[:, 2] + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(dh).max() < 1e-9
    np.testing.assert_allclose(log.ego.vx, result.ego[:, 3], atol=1e-9)
    np.testing.assert_allclose(log.ego.yaw_rate, result.ego[:, 7], atol=1e-9)

    counts = np.bincount(result.box_frame, minlength=result.num_frames)
    assert np.array_equal(np.diff(log.tracks.frame_start), counts)
    # boxes: same objects, positions within the detection noise, categories preserved
    for frame in (0, result.num_frames // 2, result.num_frames - 1):
        sim_rows = np.flatnonzero(result.box_frame == frame)
        got = log.tracks.rows(frame)
        sim_xy = result.box_state[sim_rows, :2]
        log_xy = np.column_stack([log.tracks.x[got], log.tracks.y[got]])
        d = np.hypot(*(sim_xy[:, None] - log_xy[None]).transpose(2, 0, 1)).min(axis=1)
        assert d.max() < 0.25
        sim_cats = sorted(
            KIND_CATEGORY[int(k)] for k in result.track_kind[result.box_track[sim_rows]]
        )
        log_cats = sorted(CATEGORY_NAMES[c] for c in log.tracks.category[got])
        assert sim_cats == log_cats

    frames, types = frame_tags(result, network)
    assert sorted(
        zip(log.tags.frame_index.tolist(), log.tags.type.tolist(), strict=True)
    ) == sorted(zip(frames.tolist(), types.tolist(), strict=True))
    lights = sorted(zip(result.light_frame.tolist(), result.light_connector.tolist(), strict=True))
    got_lights = sorted(
        (f, int(c))
        for f in range(log.num_frames)
        for c in log.traffic_lights.lane_connector_id[log.traffic_lights.rows(f)]
    )
    assert got_lights == lights


def test_scenes_route_and_goal_are_consistent(tiny_synthetic):
    path = tiny_synthetic.log_paths()[0]
    log = load_log(path)
    nmap = MapsRoot(tiny_synthetic.maps_root).load(log.meta.location)
    frames_per_scene = int(SCENE_S / DT)
    assert log.num_scenes == int(np.ceil(log.num_frames / frames_per_scene))
    assert np.isnan(log.scenes.goal_x[-1]) and not np.isnan(log.scenes.goal_x[:-1]).any()
    for s in range(log.num_scenes - 1):
        route = set(log.scenes.roadblocks(s).tolist())
        # the ego drives on its route during the scene: each frame's nearest lane's roadblock
        for frame in range(s * frames_per_scene, (s + 1) * frames_per_scene, 40):
            hit = nmap.nearest_lane_hit(log.ego.x[frame], log.ego.y[frame], log.ego.heading[frame])
            table = nmap.lanes if hit.layer == "lane" else nmap.lane_connectors
            row = table.row(hit.fid)
            rb = (
                table.lane_group_fid[row]
                if hit.layer == "lane"
                else table.lane_group_connector_fid[row]
            )
            assert int(rb) in route, (s, frame)
        # the goal is the pose the ego reaches GOAL_AHEAD_S after the scene
        goal_frame = min((s + 1) * frames_per_scene + int(GOAL_AHEAD_S / DT), log.num_frames - 1)
        assert log.scenes.goal_x[s] == pytest.approx(log.ego.x[goal_frame])
    assert len(enumerate_scenarios(log).token_hex) > 0
