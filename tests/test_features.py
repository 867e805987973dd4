"""The PLUTO feature builder on hand-built maps and logs with known answers: keys, shapes and dtypes,
frames, agents and targets, map polygons, a reference line through a left turn, route correction,
static objects, causal facts, the validity rule and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from feature_factory import (
    X0,
    Y0,
    Box,
    LogSpec,
    check_keys_shapes_dtypes,
    ego_drive,
    intersection_layers,
    make_log,
    moving_box,
    straight_road_layers,
    write_map,
)

from pluto_dvc.features import FeatureError, LogFeatureBuilder, PlutoFeatures
from pluto_dvc.features.agents import EGO_LENGTH, EGO_WIDTH
from pluto_dvc.features.geometry import wrap_angle
from pluto_dvc.params import FeatureParams

N = 240  # frames (12 s): scenarios at frames 40 .. 79 have 2 s history and 8 s future
PRESENT = 20
NORTH = math.pi / 2
# In ``scene`` the ego (rear axle at y = -48 + 0.6 k after k future steps) goes straight through
# the red left-turn connector 2002 of its route (polygon from y = -12): its centre (1.461 m ahead)
# is inside from step 58 on, so label cleaning keeps the first 57 future steps.
SCENE_VALID_FUTURE = 57


@pytest.fixture(scope="module")
def junction(tmp_path_factory: pytest.TempPathFactory):
    return write_map(tmp_path_factory.mktemp("junction"), intersection_layers())


def _ego_north(start_y: float, speed: float) -> tuple:
    return ego_drive(N, (1.75, start_y), NORTH, speed)


def _local_to_global(ego_xy, ego_heading, rel_xy):
    c, s = math.cos(ego_heading), math.sin(ego_heading)
    return (ego_xy[0] + c * rel_xy[0] - s * rel_xy[1], ego_xy[1] + s * rel_xy[0] + c * rel_xy[1])


@pytest.fixture(scope="module")
def scene(junction):
    """Ego northbound on lane 1000 at 6 m/s; a lead car 20 m ahead; an agent at a known relative
    pose; a pedestrian; cones on and off the road; connector 2002 (left turn) red."""
    x, y, h, v = _ego_north(-60.0, 6.0)
    frame = 40
    ego_xy = (x[frame], y[frame])
    boxes = moving_box(1, N, "vehicle", (1.75, -60.0 + 20.0), NORTH, 6.0)
    # agent 2 at ego-relative (10, 3.5), relative heading 0.5, speed 5 along its heading
    gx, gy = _local_to_global(ego_xy, NORTH, (10.0, 3.5))
    boxes.append(
        Box(
            2,
            frame,
            "vehicle",
            gx,
            gy,
            NORTH + 0.5,
            1.9,
            4.6,
            5 * math.cos(NORTH + 0.5),
            5 * math.sin(NORTH + 0.5),
        )
    )
    boxes += [Box(3, f, "pedestrian", -8.0, -49.0, 0.0, 0.6, 0.6) for f in range(N)]
    boxes += [Box(4, f, "traffic_cone", 1.75, -11.0, 0.0, 0.5, 0.5) for f in range(N)]
    boxes += [Box(5, f, "barrier", -30.0, -40.0, 0.0, 0.5, 2.0) for f in range(N)]  # off road
    spec = LogSpec(x, y, h, v, route=(100, 3002, 102), boxes=boxes, all_frames_lights=[(2002, 2)])
    log = make_log(spec)
    builder = LogFeatureBuilder(FeatureParams(), log, junction)
    return builder, builder.build(frame), frame


def test_keys_shapes_and_dtypes(scene):
    _, sample, _ = scene
    sizes = check_keys_shapes_dtypes(sample)
    assert sizes["A"] == 4  # ego + 2 vehicles + pedestrian
    PlutoFeatures.from_flat(sample).validate()


def test_flat_round_trip(scene):
    _, sample, _ = scene
    again = PlutoFeatures.from_flat(sample).to_flat()
    assert set(again) == set(sample)
    for key in sample:
        assert again[key] is sample[key]


def test_ego_frame_and_current_state(scene):
    _, s, frame = scene
    assert np.allclose(s["origin"], (X0 + 1.75, Y0 - 60.0 + 6.0 * frame * 0.05))
    assert float(s["angle"]) == pytest.approx(NORTH)
    assert np.allclose(s["agent.position"][0, PRESENT], 0.0, atol=1e-4)
    assert s["agent.heading"][0, PRESENT] == pytest.approx(0.0, abs=1e-6)
    # the ego drives straight ahead: 0.1 s steps of 0.6 m along +x (until the label cleaning cut)
    kept = PRESENT + 1 + SCENE_VALID_FUTURE
    assert np.allclose(s["agent.position"][0, :kept, 1], 0.0, atol=1e-3)
    assert np.allclose(np.diff(s["agent.position"][0, :kept, 0]), 0.6, atol=1e-3)
    assert np.allclose(s["agent.velocity"][0, PRESENT], (6.0, 0.0), atol=1e-4)
    assert np.allclose(s["agent.shape"][0, PRESENT], (EGO_WIDTH, EGO_LENGTH))
    assert np.allclose(s["current_state"], (0, 0, 0, 6.0, 0.0, 0.0, 0.0), atol=1e-6)


def test_turning_ego_velocity_and_current_state(junction):
    """Heading sweeps 0.02 rad per frame and the ego slides sideways (vy = 0.5 in the vehicle
    frame): ego velocities are the vehicle-frame ones rotated by the heading relative to now."""
    x, y, _, v = _ego_north(-60.0, 6.0)
    h = NORTH + 0.02 * (np.arange(N) - 40)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102)))
    log.ego.vy[:] = 0.5
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    rel = 0.02 * 2 * (np.arange(101) - PRESENT)  # 0.1 s steps = 2 frames
    assert np.allclose(s["agent.heading"][0], wrap_angle(rel), atol=1e-5)
    expected = np.stack(
        [6.0 * np.cos(rel) - 0.5 * np.sin(rel), 6.0 * np.sin(rel) + 0.5 * np.cos(rel)], 1
    )
    assert np.allclose(s["agent.velocity"][0], expected, atol=1e-4)
    yaw_rate = 0.04 / 0.1
    steering = math.atan(yaw_rate * 3.089 / 6.0)
    assert np.allclose(s["current_state"], (0, 0, 0, 6.0, 0.0, steering, yaw_rate), atol=1e-5)
    assert np.allclose(s["agent.target"][0, :, 2], wrap_angle(rel[PRESENT + 1 :]), atol=1e-5)


def test_agent_at_known_pose(scene):
    _, s, _ = scene
    pos = s["agent.position"][:, PRESENT]
    row = int(np.argmin(np.hypot(*(pos - (10.0, 3.5)).T)))
    assert np.allclose(pos[row], (10.0, 3.5), atol=1e-3)
    assert s["agent.heading"][row, PRESENT] == pytest.approx(0.5, abs=1e-5)
    # global velocity 5 m/s along its global heading -> ego frame: 5 * (cos 0.5, sin 0.5)
    assert np.allclose(s["agent.velocity"][row, PRESENT], (5 * math.cos(0.5), 5 * math.sin(0.5)))
    assert np.allclose(s["agent.shape"][row, PRESENT], (1.9, 4.6))
    # seen only at the present frame
    assert s["agent.valid_mask"][row].sum() == 1 and s["agent.valid_mask"][row, PRESENT]
    assert not s["agent.target"][row].any()


def test_agents_nearest_first_with_categories(scene):
    _, s, _ = scene
    # nearest to the ego centre (1.461 m ahead of the rear axle) first
    dist = np.hypot(*(s["agent.position"][1:, PRESENT] - (1.461, 0.0)).T)
    assert np.all(np.diff(dist) >= 0)
    assert s["agent.category"][0] == 0
    assert sorted(s["agent.category"][1:].tolist()) == [1, 1, 2]  # 2 vehicles, 1 pedestrian


def test_agent_targets(scene):
    _, s, _ = scene
    lead = int(np.argmin(np.hypot(*(s["agent.position"][:, PRESENT] - (20.0, 0.0)).T)))
    target = s["agent.target"][lead]
    steps = np.arange(1, 81)
    assert np.allclose(target[:, 0], 0.6 * steps, atol=1e-3)
    assert np.allclose(target[:, 1:], 0.0, atol=1e-3)
    ego = s["agent.target"][0]
    cut = SCENE_VALID_FUTURE
    assert np.allclose(ego[:cut, 0], 0.6 * steps[:cut], atol=1e-3)
    assert not ego[cut:].any()  # label-cleaned steps are zeroed like padding
    # targets are the future positions minus the present one
    fut = s["agent.position"][lead, PRESENT + 1 :] - s["agent.position"][lead, PRESENT]
    assert np.allclose(target[:, :2], fut, atol=1e-4)


def test_max_agents_keeps_the_nearest(junction):
    x, y, h, v = _ego_north(-60.0, 0.0)
    boxes = [
        Box(k, f, "vehicle", 1.75, -60.0 + 5.0 * (k + 1), NORTH) for k in range(6) for f in range(N)
    ]
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102), boxes=boxes))
    s = LogFeatureBuilder(FeatureParams(max_agents=3), log, junction).build(40)
    assert s["agent.position"].shape[0] == 4
    assert np.allclose(s["agent.position"][1:, PRESENT, 0], (5.0, 10.0, 15.0), atol=1e-4)
    # PLUTO applies no distance cut: the radius does not limit agents
    s = LogFeatureBuilder(FeatureParams(radius_m=12.0), log, junction).build(40)
    assert np.allclose(s["agent.position"][1:, PRESENT, 0], 5.0 * np.arange(1, 7), atol=1e-4)


def test_agent_at_130_m_is_kept(junction):
    """Issue 13 item 1: an agent 130 m from the ego centre (beyond the 120 m radius) is kept."""
    x, y, h, v = _ego_north(-60.0, 0.0)
    far = [Box(1, f, "vehicle", 1.75, -60.0 + 1.461 + 130.0, NORTH) for f in range(N)]
    log = make_log(LogSpec(x, y, h, v, route=(100, 3001, 101), boxes=far))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    assert s["agent.position"].shape[0] == 2
    assert np.allclose(s["agent.position"][1, PRESENT], (131.461, 0.0), atol=1e-3)


def test_map_polygons(scene):
    _, s, _ = scene
    ids = s["map.polygon_id"].tolist()
    assert {1000, 2001, 2002, 2003, 601} <= set(ids)
    k = {fid: ids.index(fid) for fid in ids}
    types = s["map.polygon_type"]
    assert types[k[1000]] == 0 and types[k[2002]] == 1 and types[k[601]] == 2
    on_route = s["map.polygon_on_route"]
    assert on_route[k[1000]] and on_route[k[2002]] and on_route[k[1002]]
    assert not on_route[k[2001]] and not on_route[k[2003]] and not on_route[k[601]]
    tl = s["map.polygon_tl_status"]
    assert tl[k[2002]] == 2 and tl[k[2001]] == 3 and tl[k[1000]] == 3
    assert s["map.polygon_has_speed_limit"][k[1000]]
    assert s["map.polygon_speed_limit"][k[1000]] == pytest.approx(13.0)
    assert not s["map.polygon_has_speed_limit"][k[2003]]
    assert s["map.polygon_speed_limit"][k[2003]] == 0.0
    assert s["map.polygon_road_block_id"][k[1000]] == 100
    assert s["map.polygon_road_block_id"][k[2002]] == 3002
    assert s["map.polygon_road_block_id"][k[601]] == -1
    # lane 1000 runs along the ego x axis, 0 m laterally, heading 0; points are 20 polylines
    lane = s["map.point_position"][k[1000]]
    assert np.allclose(lane[0, :, 1], 0.0, atol=1e-3)
    assert np.allclose(lane[1, :, 1], 1.75, atol=1e-3) and np.allclose(
        lane[2, :, 1], -1.75, atol=1e-3
    )
    assert np.allclose(s["map.point_orientation"][k[1000]], 0.0, atol=1e-4)
    vec = s["map.point_vector"][k[1000], 0]
    assert np.allclose(vec[:, 0], 188.0 / 20, atol=1e-3)  # 188 m lane in 20 equal steps
    assert np.array_equal(s["map.point_side"][k[1000]], [0, 1, 2])
    assert np.allclose(s["map.polygon_position"][k[1000]], lane[0, 0])
    assert np.allclose(s["map.polygon_center"][k[1000], :2], lane[0, 10])
    # the lane starts 152 m behind the ego: points beyond the 120 m square are invalid
    valid = s["map.valid_mask"][k[1000]]
    assert np.array_equal(valid, np.abs(lane[0, :, 0]) <= 120.0)
    assert not valid.all() and valid.any()


def test_crosswalk_from_minimum_rectangle(scene):
    _, s, _ = scene
    k = s["map.polygon_id"].tolist().index(601)
    mid, left, right = s["map.point_position"][k]
    # 7 m x 3 m crosswalk across the lane, 32..35 m ahead: long edges along y
    assert np.ptp(mid[:, 1]) == pytest.approx(7.0 * 19 / 20, abs=1e-3)
    assert np.allclose(mid[:, 0], 33.5, atol=1e-3)
    assert np.allclose(np.abs(left[:, 0] - right[:, 0]), 3.0, atol=1e-3)
    d, o = mid[-1] - mid[0], left[0] - mid[0]
    assert d[0] * o[1] - d[1] * o[0] > 0  # left boundary on the left of the midline direction


def test_reference_line_turns_left_inside_route(scene, junction):
    _, s, _ = scene
    assert s["reference_line.position"].shape[0] == 1
    valid = s["reference_line.valid_mask"][0]
    assert valid.all()
    pos = s["reference_line.position"][0].astype(np.float64)
    assert np.allclose(pos[0], 0.0, atol=1e-3)
    assert np.allclose(np.hypot(*np.diff(pos, axis=0).T), 1.0, atol=0.02)
    orient = s["reference_line.orientation"][0]
    assert orient[0] == pytest.approx(0.0, abs=1e-3)
    assert orient[-2] == pytest.approx(math.pi / 2, abs=0.02)  # heading changed by +pi/2
    # every point lies inside the route's roadblocks (100, 3002, 102), none in 3001 / 3003
    origin, angle = s["origin"], float(s["angle"])
    c, sn = math.cos(angle), math.sin(angle)
    glob = origin + np.stack([c * pos[:, 0] - sn * pos[:, 1], sn * pos[:, 0] + c * pos[:, 1]], 1)
    route = shapely.union_all(
        [
            junction.roadblocks.polygon[junction.roadblocks.row(100)],
            junction.roadblocks.polygon[junction.roadblocks.row(102)],
            junction.roadblock_connectors.polygon[junction.roadblock_connectors.row(3002)],
        ]
    )
    assert np.all(shapely.distance(route, shapely.points(glob)) < 0.05)
    vec = s["reference_line.vector"][0]
    assert np.allclose(np.arctan2(vec[:, 1], vec[:, 0]), orient, atol=1e-5)
    # the ego goes straight, leaving the line after the turn: lateral offsets grow
    proj = s["reference_line.future_projection"][0]
    assert np.allclose(proj[:3, 1], 0.0, atol=0.05)
    assert np.allclose(proj[:3, 0], (6.0, 12.0, 18.0), atol=0.05)


def test_route_correction_when_ego_starts_off_route(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(102,)))  # the ego's roadblock 100 is missing
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    ids = s["map.polygon_id"].tolist()
    assert s["map.polygon_on_route"][ids.index(1000)]
    assert s["map.polygon_on_route"][ids.index(2002)]  # 100 -> 102 through the left turn
    assert not s["map.polygon_on_route"][ids.index(2001)]
    orient = s["reference_line.orientation"][0]
    assert orient[-2] == pytest.approx(math.pi / 2, abs=0.02)


def test_straight_route_gives_straight_line(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3001, 101)))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    pos = s["reference_line.position"]
    assert pos.shape[0] == 1
    assert np.allclose(pos[0, :, 1], 0.0, atol=1e-3)


def test_static_objects_on_drivable_area_only(scene):
    _, s, _ = scene
    assert s["static_objects.position"].shape == (1, 2)
    # cone at global (1.75, -11) with the ego at y = -48: 37 m ahead
    assert np.allclose(s["static_objects.position"][0], (37.0, 0.0), atol=1e-3)
    assert s["static_objects.category"][0] == 2  # traffic_cone
    assert np.allclose(s["static_objects.shape"][0], (0.5, 0.5))
    assert s["static_objects.heading"][0] == pytest.approx(wrap_angle(-NORTH), abs=1e-5)
    assert s["static_objects.valid_mask"].all()


def test_causal_leading_agent_red_light_free_path(scene):
    """Leading objects of ``scene`` along the ego path (lane 1000 -> red left turn 2002), by
    distance to the ego box (front 4.049 m ahead of the rear axle): the lead car (rear 17.75 m
    ahead: 13.701 m), the red connector (from 36 m: 31.951 m), the cone (rear 36.75 m: 32.701 m)."""
    _, s, _ = scene
    ids = s["map.polygon_id"].tolist()
    lead = int(np.argmin(np.hypot(*(s["agent.position"][:, PRESENT] - (20.0, 0.0)).T)))
    assert s["causal.leading_agent_mask"].tolist() == [k == lead for k in range(4)]
    assert s["causal.leading_distance"][lead] == pytest.approx(20.0 - 2.25 - 4.049, abs=1e-3)
    assert s["causal.leading_distance"].sum() == s["causal.leading_distance"][lead]
    assert not s["causal.is_waiting_for_red_light_without_lead"]  # the lead car is nearer
    assert s["causal.ego_care_red_light_mask"].tolist() == [i == 2002 for i in ids]
    # free path: v = 6: from 36 / 10 + 5.176 / 2 + 3 = 9.19 m to the lead's 13.70 - 3 = 10.70 m
    # past the ego centre's projection, resampled every metre: the point 10 m on
    points = s["causal.free_path_points"]
    assert np.allclose(points, [[1.461 + 10.0, 0.0, 0.0]], atol=1e-3)
    assert s["causal.free_path_valid_mask"].tolist() == [True]
    # interaction: the lead car's future path meets the ego's (boxes collide) 33 steps before
    # the ego gets there (0.6 m steps, 20 m apart -> 33.3 steps)
    labels = s["causal.interaction_label"]
    assert labels[lead] == 33 and labels.tolist().count(0) == 3


def test_red_light_label_cleaning(scene, junction):
    """Issue 13 item 4: the ego future is cut from the first step whose centre is inside the red
    connector ahead (step 58 in ``scene``), in the causal mask and the ego row of agent.valid_mask;
    an ego already inside the red connector has no valid future; green lights cut nothing."""
    _, s, _ = scene
    mask = s["causal.fixed_ego_future_valid_mask"]
    assert mask.tolist() == [True] * SCENE_VALID_FUTURE + [False] * (80 - SCENE_VALID_FUTURE)
    assert np.array_equal(s["agent.valid_mask"][0, PRESENT + 1 :], mask)
    assert s["agent.valid_mask"][0, : PRESENT + 1].all()
    assert not s["agent.position"][0, PRESENT + 1 + SCENE_VALID_FUTURE :].any()
    # the ego stands inside connector 2002 (rear axle 2 m past the stop line): all cut
    x, y, h, v = _ego_north(-10.0, 0.0)
    for status, valid_future in ((2, 0), (0, 80)):
        log = make_log(
            LogSpec(x, y, h, v, route=(100, 3002, 102), all_frames_lights=[(2002, status)])
        )
        inside = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
        assert inside["causal.fixed_ego_future_valid_mask"].sum() == valid_future
        assert inside["agent.valid_mask"][0].sum() == PRESENT + 1 + valid_future
        assert bool(inside["causal.is_waiting_for_red_light_without_lead"]) == (status == 2)
    # the cleaning is part of the agents, with or without the causal keys
    off = LogFeatureBuilder(FeatureParams(build_causal=False), scene[0].log, junction).build(40)
    assert np.array_equal(off["agent.valid_mask"], s["agent.valid_mask"])


def test_ego_waiting_at_red_light(junction):
    x, y, h, v = _ego_north(-20.0, 0.0)  # stopped 8 m before the junction
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102), all_frames_lights=[(2002, 2)]))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    ids = s["map.polygon_id"].tolist()
    assert bool(s["causal.is_waiting_for_red_light_without_lead"])
    assert s["causal.ego_care_red_light_mask"].tolist() == [i == 2002 for i in ids]
    assert s["map.polygon_tl_status"][ids.index(2002)] == 2
    assert not s["causal.leading_agent_mask"].any()
    assert s["causal.fixed_ego_future_valid_mask"].all()  # it never enters the connector
    # v = 0: the free path would run from 5.59 m to the light's 3.95 m - 3: empty
    assert s["causal.free_path_points"].shape == (0, 3)
    # green: no red light to care about
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102), all_frames_lights=[(2002, 0)]))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    assert not s["causal.ego_care_red_light_mask"].any()
    assert not s["causal.is_waiting_for_red_light_without_lead"]
    # v = 0, nothing ahead: free from 5.59 m to max(7, 0) - 3 = 4 m: still empty; a red light
    # off the route (2001 straight on) is not cared about either
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102), all_frames_lights=[(2001, 2)]))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    assert not s["causal.ego_care_red_light_mask"].any()


def test_feature_error_when_ego_is_off_the_map(junction):
    x, y, h, v = ego_drive(N, (500.0, 500.0), 0.0, 5.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102)))
    builder = LogFeatureBuilder(FeatureParams(), log, junction)
    with pytest.raises(FeatureError, match="reference line"):
        builder.build(40)
    off = LogFeatureBuilder(FeatureParams(build_reference_lines=False), log, junction)
    with pytest.raises(FeatureError, match="no map polygon"):
        off.build(40)


def test_feature_error_when_ego_faces_the_wrong_way(junction):
    x, y, h, v = ego_drive(N, (1.75, -30.0), -NORTH, 5.0)  # southbound on a northbound lane
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102)))
    with pytest.raises(FeatureError, match="reference line"):
        LogFeatureBuilder(FeatureParams(), log, junction).build(40)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [(39, "not enough history"), (80, "not enough future"), (-1, "outside"), (N, "outside")],
)
def test_feature_error_without_history_or_future(scene, frame, reason):
    builder, _, _ = scene
    with pytest.raises(FeatureError, match=reason) as info:
        builder.build(frame)
    assert reason in info.value.reason
    builder.build(79)  # the last frame with a full future


def test_feature_error_on_clock_gap(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102)))
    log.clock.timestamp_us[220:] += 2_000_000  # a 2 s hole before frame 220
    builder = LogFeatureBuilder(FeatureParams(), log, junction)
    builder.build(59)  # window 19..219
    with pytest.raises(FeatureError, match="gap"):
        builder.build(60)


def test_sample_interval_must_fit_the_log_clock(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(100,)))
    with pytest.raises(ValueError, match="multiple"):
        LogFeatureBuilder(FeatureParams(sample_interval_s=0.07), log, junction)


def test_switching_parts_off_drops_their_keys(scene, junction):
    builder, _, frame = scene
    params = FeatureParams(
        build_reference_lines=False,
        build_static_objects=False,
        build_cost_map=False,
        build_causal=False,
    )
    s = LogFeatureBuilder(params, builder.log, junction).build(frame)
    assert not any(k.startswith(("reference_line.", "static_objects.", "causal.")) for k in s)
    assert "cost_maps" not in s and "map.point_position" in s and "agent.position" in s


def test_parameters_change_shapes(scene, junction):
    builder, _, frame = scene
    params = FeatureParams(
        history_horizon_s=1.0,
        future_horizon_s=4.0,
        sample_interval_s=0.2,
        map_polyline_points=10,
        reference_line_length_m=60.0,
        cost_map_size=200,
        cost_map_resolution_m=0.5,
    )
    s = LogFeatureBuilder(params, builder.log, junction).build(frame)
    assert s["agent.position"].shape[1] == 5 + 1 + 20
    assert s["agent.target"].shape[1] == 20
    assert s["map.point_position"].shape[2:] == (10, 2)
    assert s["reference_line.position"].shape[1] == 60
    assert s["reference_line.future_projection"].shape[1] == 4
    assert s["cost_maps"].shape == (200, 200, 1)


def test_determinism(scene, junction):
    builder, sample, frame = scene
    again = LogFeatureBuilder(FeatureParams(), builder.log, junction).build(frame)
    builder.build(frame + 5)  # state left by other frames must not leak
    third = builder.build(frame)
    for key in sample:
        assert sample[key].tobytes() == again[key].tobytes(), key
        assert sample[key].tobytes() == third[key].tobytes(), key


def test_route_of_roadblocks_only_still_turns(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 102)))  # no roadblock connector listed
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    ids = s["map.polygon_id"].tolist()
    assert s["map.polygon_on_route"][ids.index(2002)]
    assert not s["map.polygon_on_route"][ids.index(2001)]
    assert s["reference_line.orientation"][0, -2] == pytest.approx(math.pi / 2, abs=0.02)


def test_two_branches_of_the_route_give_two_lines(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102, 3003, 103)))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    end = s["reference_line.orientation"][:, -2]
    assert s["reference_line.position"].shape[0] == 2
    assert np.allclose(np.sort(end), (-math.pi / 2, math.pi / 2), atol=0.02)
    # both share their first 36 m (the lane up to the junction)
    pos = s["reference_line.position"]
    assert np.allclose(pos[0, :36], pos[1, :36], atol=1e-3)


def test_line_selection_drops_duplicates_and_short_lines():
    from pluto_dvc.features.reference_lines import CandidatePath, select_lines

    def paths(*lengths: float) -> list[CandidatePath]:
        return [CandidatePath([], np.zeros((2, 2)), np.zeros(2), 0.0, x) for x in lengths]

    length = 120
    xs = np.arange(length, dtype=np.float64)
    straight = np.stack([xs, np.zeros(length)], 1)
    near_copy = straight + (0.0, 0.2)  # |dx| + |dy| < 0.5 m everywhere: a duplicate
    beside = straight + (0.0, 3.5)  # another lane
    lines = np.stack([straight, near_copy, beside, straight + (0.0, -3.5)])
    valid = np.ones((4, length), dtype=bool)
    # a 40 m line next to lines longer than 0.8 x 120 = 96 m: dropped
    assert select_lines(paths(119, 119, 119, 40), lines, valid, length) == [0, 2]
    # 90 m is not long enough to drop the others: all lines are short, all stay
    assert select_lines(paths(90, 90, 90, 40), lines, valid, length) == [0, 2, 3]
    # of two duplicates the longer stays
    assert select_lines(paths(30, 90, 90, 40), lines, valid, length) == [1, 2, 3]
    # PLUTO's measure is |dx| + |dy|: 0.3 m + 0.3 m apart is not a duplicate (0.42 m euclidean)
    lines[1] = straight + (0.3, 0.3)
    assert select_lines(paths(119, 119, 119, 119), lines, valid, length) == [0, 1, 2, 3]


def test_adjacent_lane_gives_a_second_reference_line(tmp_path):
    """Issue 13 item 3: on a two-lane road (centrelines y = 0 and y = -3.5, same roadblock) the
    +-3 m box around the ego centre meets the adjacent lane's polygon: two lines, 3.5 m apart."""
    road = write_map(tmp_path, straight_road_layers())
    x, y, h, v = ego_drive(N, (0.0, 0.0), 0.0, 5.0)
    s = LogFeatureBuilder(FeatureParams(), make_log(LogSpec(x, y, h, v, route=(100,))), road).build(
        40
    )
    pos = s["reference_line.position"]
    assert pos.shape[0] == 2 and s["reference_line.valid_mask"].all()
    assert sorted(np.round(pos[:, 0, 1], 3).tolist()) == [-3.5, 0.0]
    assert np.allclose(pos[:, :, 0], np.arange(120), atol=1e-3)  # both from the ego's x
    # the target line compares magnitudes: the ego's own lane has |lateral| 0
    lateral = np.abs(s["reference_line.future_projection"][:, -1, 1])
    assert sorted(np.round(lateral, 3).tolist()) == [0.0, 3.5]


def test_line_never_starts_behind_the_ego(junction):
    """The ego is 1.5 m past the end of lane 1000 (inside connector 2001): the lane still touches
    the box around the ego centre, but its line starts at the ego's projection on the whole path,
    not at the lane's end 1.5 m behind; connector 2001 (its successor) is merged into it."""
    x, y, h, v = _ego_north(-12.0 + 1.5, 0.0)
    log = make_log(LogSpec(x, y, h, v, route=(100, 3001, 101)))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    pos = s["reference_line.position"]
    assert pos.shape[0] == 1
    assert np.allclose(pos[0, 0], (0.0, 0.0), atol=1e-3)
    assert np.allclose(pos[0, :, 1], 0.0, atol=1e-3) and s["reference_line.valid_mask"].all()


def test_polygon_in_the_square_corner_is_kept(junction):
    """Issue 13 item 2: lane 1003's centreline enters only the corner of the +-120 m square
    (ego-frame points (102, 98.25) and (111.4, 98.25), 141 m and 148 m away): kept."""
    x, y, h, v = ego_drive(N, (-90.0, -100.0), 0.0, 0.0)
    log = make_log(LogSpec(x, y, h, v, route=(100,)))
    s = LogFeatureBuilder(FeatureParams(build_reference_lines=False), log, junction).build(40)
    ids = s["map.polygon_id"].tolist()
    assert 1003 in ids
    k = ids.index(1003)
    valid = s["map.valid_mask"][k]
    assert valid.sum() == 2
    pts = s["map.point_position"][k, 0][valid]
    assert np.allclose(pts[:, 1], 98.25, atol=1e-3)
    assert np.all(np.hypot(*pts.T) > 120.0) and np.all(np.abs(pts) < 120.0)


def test_interaction_labels_from_future_paths(junction):
    x, y, h, v = _ego_north(-60.0, 6.0)  # future path: x = 1.75, y from -48 to 0
    crossing = moving_box(1, N, "pedestrian", (-6.0, -20.0), 0.0, 1.0, width=0.6, length=0.6)
    parallel = moving_box(2, N, "pedestrian", (-9.0, -60.0), NORTH, 1.0, width=0.6, length=0.6)
    boxes = crossing + parallel
    log = make_log(LogSpec(x, y, h, v, route=(100, 3002, 102), boxes=boxes))
    s = LogFeatureBuilder(FeatureParams(), log, junction).build(40)
    rows = {
        round(float(s["agent.position"][k, PRESENT, 1])): k for k in range(1, 3)
    }  # lateral offset (m) -> row: crossing one starts 5.75 m left (x=-4), parallel 10.75 m
    labels = s["causal.interaction_label"]
    # the crossing pedestrian (x = -4 + 0.1 j) meets the ego path x = 1.75 at step 57 / 58; the
    # ego's rear axle is nearest there at step 47: the ego comes first (label < 0); its box
    # (1.67 m ahead of the rear axle) holds the pedestrian then
    assert labels[rows[6]] in (-10, -11)
    assert labels[rows[11]] == 0 and labels[0] == 0
    assert not s["causal.leading_agent_mask"].any()  # neither is on the ego path now


def test_validate_rejects_wrong_dtypes_and_shapes(scene):
    _, sample, _ = scene
    bad = dict(sample, **{"agent.heading": sample["agent.heading"].astype(np.float64)})
    with pytest.raises(ValueError, match="dtype"):
        PlutoFeatures.from_flat(bad).validate()
    bad = dict(sample, **{"map.valid_mask": sample["map.valid_mask"][:-1]})
    with pytest.raises(ValueError, match="shape"):
        PlutoFeatures.from_flat(bad).validate()
    bad = dict(sample, **{"causal.interaction_label": np.zeros(99, dtype=np.int16)})
    with pytest.raises(ValueError, match="interaction_label"):
        PlutoFeatures.from_flat(bad).validate()
