"""Scenario tags derived from what happens in a simulated log (nuPlan scenario-type names).

Each rule is a per-frame condition on the ego and its surroundings (thresholds below, SI units).
Like nuPlan's tags, they are sparse: while a condition holds, the frame is tagged every
``TAG_EVERY_FRAMES`` frames (0.5 s), so a 10 s episode yields about 20 tags of its type.
Rules (v: ego speed m/s, a: longitudinal accel m/s^2, lead: the vehicle ahead on the ego path):

- starting_left_turn / starting_right_turn / starting_straight_traffic_light_intersection_traversal:
  from 2 s before to 1 s after the ego enters a connector of that turn (all junctions signalised)
- on_traffic_light_intersection: on a connector; traversing_intersection: on one with v > 1
- stationary: v < 0.1
- stationary_in_traffic: v < 0.3, a still lead (< 0.5 m/s) within 8 m, not held by a light
- stationary_at_traffic_light_with_lead / _without_lead: v < 0.3 held by a red / yellow light,
  with or without a lead within 12 m
- stopping_at_traffic_light_with_lead / _without_lead: a < -0.6, v > 0.3, held by a light
- stopping_with_lead: a < -0.6, 0.3 < v < 6, lead within 25 m
- accelerating_at_traffic_light: a > 0.5, v < 4, on or within 2 s after a connector stop
- following_lane_with_lead: v > 2.5, lead within 40 m at |dv| < 3, on a lane, no lane change;
  following_lane_with_slow_lead: the same with the lead below 60 % of ego's speed limit
- following_lane_without_lead: v > 3, no lead within 50 m, on a lane, no lane change
- changing_lane, changing_lane_to_left / _to_right, changing_lane_with_lead (lead within 30 m)
- high_magnitude_speed: v > 9; medium_magnitude_speed: 5 < v <= 9; low_magnitude_speed: 0.3 < v < 1.5
- high_lateral_acceleration: |v * yaw_rate| > 1.8
- waiting_for_pedestrian_to_cross: v < 1 held for a pedestrian on a crosswalk on the path
- traversing_crosswalk: the ego rear axle or centre inside a crosswalk
- near_multiple_vehicles: >= 5 vehicles within 15 m; near_multiple_pedestrians: >= 3 within 15 m
- near_high_speed_vehicle: a vehicle faster than 11 m/s within 15 m
- behind_long_vehicle: lead longer than 8 m within 25 m; behind_bike: a bicycle lead within 20 m
"""

from __future__ import annotations

import numpy as np
import shapely

from pluto_dvc.nuplan.vehicle import EGO_REAR_AXLE_TO_CENTER_M
from pluto_dvc.reference import scenario_types
from pluto_dvc.synthetic.network import RoadNetwork
from pluto_dvc.synthetic.simulation import SimResult
from pluto_dvc.synthetic.traffic_agents import BICYCLE, DT, PEDESTRIAN, VEHICLE

TAG_EVERY_FRAMES = 10


def frame_conditions(result: SimResult, network: RoadNetwork) -> dict[str, np.ndarray]:
    """Scenario type -> (N,) bool: the frames where its rule holds."""
    n = result.num_frames
    v, a, yaw_rate = result.ego[:, 3], result.ego[:, 5], result.ego[:, 7]
    el = result.ego_element
    is_conn = np.isin(el, list(network.connectors))
    turn = np.array([network.connectors[f].turn if f in network.connectors else "" for f in el])
    lead, gap = result.ego_leader, result.ego_leader_gap
    has_lead = (lead >= 0) & np.isfinite(gap)
    lead_kind = np.where(has_lead, result.track_kind[np.maximum(lead, 0)], -1)
    lead_len = np.where(has_lead, result.track_size[np.maximum(lead, 0), 1], 0.0)
    lead_v = _lead_speed(result)
    near = _neighbour_counts(result)
    lane_change = result.ego_lane_change
    held = result.ego_wait_light
    limit = np.array(
        [
            (network.connectors[f] if f in network.connectors else network.lanes[f]).speed_limit_mps
            for f in el
        ]
    )

    c: dict[str, np.ndarray] = {}
    starting = _around_entries(el, is_conn, turn, before=int(2 / DT), after=int(1 / DT))
    c["starting_left_turn"] = starting["left"]
    c["starting_right_turn"] = starting["right"]
    c["starting_straight_traffic_light_intersection_traversal"] = starting["straight"]
    c["on_traffic_light_intersection"] = is_conn
    c["traversing_intersection"] = is_conn & (v > 1.0)
    c["stationary"] = v < 0.1
    c["stationary_in_traffic"] = (v < 0.3) & has_lead & (gap < 8) & (lead_v < 0.5) & ~held
    c["stationary_at_traffic_light_with_lead"] = (v < 0.3) & held & has_lead & (gap < 12)
    c["stationary_at_traffic_light_without_lead"] = (v < 0.3) & held & ~(has_lead & (gap < 12))
    c["stopping_at_traffic_light_with_lead"] = (a < -0.6) & (v > 0.3) & held & has_lead & (gap < 25)
    c["stopping_at_traffic_light_without_lead"] = (a < -0.6) & (v > 0.3) & held & ~has_lead
    c["stopping_with_lead"] = (a < -0.6) & (v > 0.3) & (v < 6) & has_lead & (gap < 25)
    was_held = np.convolve(held.astype(float), np.ones(int(2 / DT)), "full")[:n] > 0
    c["accelerating_at_traffic_light"] = (a > 0.5) & (v < 4) & was_held & ~held
    follow = (v > 2.5) & has_lead & (gap < 40) & (np.abs(v - lead_v) < 3) & ~is_conn
    c["following_lane_with_lead"] = follow & (lane_change == 0)
    c["following_lane_with_slow_lead"] = (
        (v > 0.5) & has_lead & (gap < 30) & (lead_v < 0.6 * limit) & ~is_conn & (lane_change == 0)
    )
    c["following_lane_without_lead"] = (
        (v > 3) & ~(has_lead & (gap < 50)) & ~is_conn & (lane_change == 0)
    )
    c["changing_lane"] = lane_change != 0
    c["changing_lane_to_left"] = lane_change > 0
    c["changing_lane_to_right"] = lane_change < 0
    c["changing_lane_with_lead"] = (lane_change != 0) & has_lead & (gap < 30)
    c["high_magnitude_speed"] = v > 9.0
    c["medium_magnitude_speed"] = (v > 5.0) & (v <= 9.0)
    c["low_magnitude_speed"] = (v > 0.3) & (v < 1.5)
    c["high_lateral_acceleration"] = np.abs(v * yaw_rate) > 1.8
    c["waiting_for_pedestrian_to_cross"] = result.ego_wait_crosswalk
    c["traversing_crosswalk"] = _on_crosswalk(result, network)
    c["near_multiple_vehicles"] = near["vehicles"] >= 5
    c["near_multiple_pedestrians"] = near["pedestrians"] >= 3
    c["near_high_speed_vehicle"] = near["fast"] >= 1
    c["behind_long_vehicle"] = has_lead & (lead_len > 8.0) & (gap < 25)
    c["behind_bike"] = has_lead & (lead_kind == BICYCLE) & (gap < 20)
    known = set(scenario_types())
    unknown = sorted(set(c) - known)
    assert not unknown, f"not nuPlan scenario types: {unknown}"
    return c


def frame_tags(result: SimResult, network: RoadNetwork) -> tuple[np.ndarray, np.ndarray]:
    """The sparse tags of a log: (frame index (T,) int32, scenario type (T,) str), frame-sorted."""
    frames, types = [], []
    every = np.arange(result.num_frames) % TAG_EVERY_FRAMES == 0
    for name, cond in sorted(frame_conditions(result, network).items()):
        idx = np.flatnonzero(cond & every)
        frames.append(idx)
        types.append(np.full(len(idx), name, dtype=object))
    frame = np.concatenate(frames).astype(np.int32)
    kind = np.concatenate(types)
    order = np.lexsort((kind.astype(str), frame))
    return frame[order], kind[order].astype(str)


def _around_entries(el, is_conn, turn, before: int, after: int) -> dict[str, np.ndarray]:
    n = len(el)
    out = {k: np.zeros(n, bool) for k in ("left", "straight", "right")}
    entries = np.flatnonzero(is_conn[1:] & (el[1:] != el[:-1])) + 1
    for k in entries:
        out[turn[k]][max(0, k - before) : min(n, k + after)] = True
    return out


def _lead_speed(result: SimResult) -> np.ndarray:
    """Speed (m/s) of the ego's lead at each frame (NaN without one)."""
    speed = np.full(result.num_frames, np.nan)
    rows = np.flatnonzero(result.box_track == result.ego_leader[result.box_frame])
    speed[result.box_frame[rows]] = np.hypot(result.box_state[rows, 6], result.box_state[rows, 7])
    return np.nan_to_num(speed, nan=0.0)


def _neighbour_counts(result: SimResult) -> dict[str, np.ndarray]:
    n = result.num_frames
    h = result.ego[:, 2]
    cx = result.ego[:, 0] + EGO_REAR_AXLE_TO_CENTER_M * np.cos(h)
    cy = result.ego[:, 1] + EGO_REAR_AXLE_TO_CENTER_M * np.sin(h)
    f = result.box_frame
    d = np.hypot(result.box_state[:, 0] - cx[f], result.box_state[:, 1] - cy[f])
    kind = result.track_kind[result.box_track]
    speed = np.hypot(result.box_state[:, 6], result.box_state[:, 7])
    close = d < 15.0
    return {
        "vehicles": np.bincount(f[close & (kind == VEHICLE)], minlength=n),
        "pedestrians": np.bincount(f[close & (kind == PEDESTRIAN)], minlength=n),
        "fast": np.bincount(f[close & (kind == VEHICLE) & (speed > 11.0)], minlength=n),
    }


def _on_crosswalk(result: SimResult, network: RoadNetwork) -> np.ndarray:
    if not network.crosswalks:
        return np.zeros(result.num_frames, bool)
    area = shapely.union_all([cw.polygon for cw in network.crosswalks.values()])
    h = result.ego[:, 2]
    inside = shapely.contains_xy(area, result.ego[:, 0], result.ego[:, 1])
    cx = result.ego[:, 0] + EGO_REAR_AXLE_TO_CENTER_M * np.cos(h)
    cy = result.ego[:, 1] + EGO_REAR_AXLE_TO_CENTER_M * np.sin(h)
    return inside | shapely.contains_xy(area, cx, cy)
