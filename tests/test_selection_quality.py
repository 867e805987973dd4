"""The quality filters (pass 2) against plain-Python re-computations over the raw log tables.

Logs get ego speed profiles where each filter matters: stop-and-go (start and stop edges),
constant speed, speed wobbling around a threshold (noise tolerance) and standing still
(displacement). The reference derives each scenario's devkit extraction window from the
timestamps directly and runs the devkit's loops (displacement sum, speed-edge detectors, token
fractions) one scenario at a time.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from test_selection import (
    SEQUENTIAL,
    Dataset,
    Ref,
    build_tables,
    by_type,
    flat,
    log_name,
    ref_candidates,
    ref_limit_total,
    selected,
    set_motion,
    write_dataset,
)

from pluto_dvc.nuplan.log_schema import MERGED_POINT_CLOUD
from pluto_dvc.selection.quality import Windows, speed_edges

CENTER_OFFSET = 1.461  # Pacifica rear axle -> centre, m


def stop_and_go(t: float) -> float:
    if t < 6.0:
        return 0.0
    if t < 8.0:
        return 4.0 * (t - 6.0)
    if t < 11.0:
        return 8.0
    if t < 13.0:
        return 8.0 - 4.0 * (t - 11.0)
    return 0.0


def go_and_stop_late(t: float) -> float:
    return 0.0 if t < 14.0 else 2.0 * (t - 14.0)


def wobble(t: float) -> float:
    return 1.0 + 0.08 * math.sin(2 * math.pi * t)


PROFILES = [stop_and_go, lambda t: 3.0, wobble, lambda t: 0.0, go_and_stop_late]


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    tables = {}
    for i, profile in enumerate(PROFILES):
        t = build_tables(i, goal_less=())
        set_motion(t, profile, heading=0.2 * i)
        tables[log_name(i)] = t
    return write_dataset(tmp_path_factory.mktemp("quality"), tables)


# ---------------------------------------------------------------------------- reference model


@dataclass
class Frames:
    """Merged frames of one log in time order: tokens, timestamps and ego per frame."""

    token: list[str]
    ts: list[int]
    x: list[float]
    y: list[float]
    heading: list[float]
    speed: list[float]


def frames_of(tables: dict) -> Frames:
    merged = {
        t
        for t, c in zip(tables["lidar"]["token"], tables["lidar"]["channel"], strict=True)
        if c == MERGED_POINT_CLOUD
    }
    pc = tables["lidar_pc"]
    rows = sorted(
        (r for r in range(len(pc["token"])) if pc["lidar_token"][r] in merged),
        key=lambda r: pc["timestamp"][r],
    )
    ego = tables["ego_pose"]
    index = {tok: k for k, tok in enumerate(ego["token"])}
    poses = [index[pc["ego_pose_token"][r]] for r in rows]
    return Frames(
        token=[pc["token"][r].hex() for r in rows],
        ts=[pc["timestamp"][r] for r in rows],
        x=[ego["x"][k] for k in poses],
        y=[ego["y"][k] for k in poses],
        heading=[2 * math.atan2(ego["qz"][k], ego["qw"][k]) for k in poses],
        speed=[math.hypot(ego["vx"][k], ego["vy"][k]) for k in poses],
    )


def ref_window(f: Frames, frame: int, tagged: bool) -> list[int]:
    """The scenario's sampled frames: [t-3 s, t+12 s] tagged, [t, t+20 s] unknown, every 2nd."""
    start = f.ts[frame] + (-3_000_000 if tagged else 0)
    end = start + (15_000_000 if tagged else 20_000_000)
    inside = [i for i in range(len(f.ts)) if start <= f.ts[i] <= end]
    return inside[::2] or [frame]


def ref_displacement(f: Frames, window: list[int]) -> float:
    """devkit ``_is_non_stationary`` over ``get_ego_future_trajectory(0, duration)``: the 0.1 s
    samples after iteration 0, i.e. every second frame from two frames after the first."""
    future = window[1:]
    cx = [f.x[i] + CENTER_OFFSET * math.cos(f.heading[i]) for i in future]
    cy = [f.y[i] + CENTER_OFFSET * math.sin(f.heading[i]) for i in future]
    points = list(zip(cx, cy, strict=True))
    return sum(math.dist(a, b) for a, b in itertools.pairwise(points))


def ref_edge(f: Frames, window: list[int], threshold: float, tol: float, rising: bool) -> bool:
    """nuplan-devkit ``_check_for_speed_edge``, step by step."""
    start = stop = f.speed[window[0]]
    found = [False, False]
    for i in window[1:]:  # the future trajectory: 0.1 s samples after iteration 0
        v = f.speed[i]
        if v > start:
            start = v
            if start > threshold >= stop and start - stop > tol:
                found[0] = True
                stop = start
        if v < stop:
            stop = v
            if start > threshold >= stop and start - stop > tol:
                found[1] = True
                start = stop
    return found[0] if rising else found[1]


def ref_quality(ds: Dataset, rows: list[Ref], keep) -> list[Ref]:
    """Rows (in their order) for which ``keep(frames, frame index, row)`` holds."""
    frames = {name: frames_of(t) for name, t in ds.tables.items()}
    out = []
    for r in rows:
        f = frames[r.log]
        if keep(f, f.token.index(r.token), r):
            out.append(r)
    return out


def candidates(ds: Dataset) -> list[Ref]:
    return flat(by_type(ref_candidates(ds, goals=True)))


# ------------------------------------------------------------------------------------ filters


@pytest.mark.parametrize("minimum", [1.0, 25.0])
def test_ego_displacement_minimum(moving, minimum):
    got = selected(moving, ego_displacement_minimum_m=minimum)
    expected = ref_quality(
        moving,
        candidates(moving),
        lambda f, i, r: ref_displacement(f, ref_window(f, i, r.type != "unknown")) >= minimum,
    )
    assert got == expected
    assert 0 < len(got) < len(candidates(moving))
    assert log_name(3) not in {r.log for r in got}  # the ego of log 3 never moves


@pytest.mark.parametrize(("threshold", "rising"), [(5.0, True), (5.0, False), (0.5, True)])
def test_ego_start_and_stop_speed_thresholds(moving, threshold, rising):
    field = "ego_start_speed_threshold" if rising else "ego_stop_speed_threshold"
    got = selected(moving, **{field: threshold})
    expected = ref_quality(
        moving,
        candidates(moving),
        lambda f, i, r: ref_edge(f, ref_window(f, i, r.type != "unknown"), threshold, 0.1, rising),
    )
    assert got == expected
    assert 0 < len(got) < len(candidates(moving))
    assert {r.log for r in got} <= {log_name(0), log_name(4)} or threshold < 1.0


def test_speed_noise_tolerance_decides_wobbles(moving):
    wobbly = {r for r in candidates(moving) if r.log == log_name(2)}
    strict = set(selected(moving, ego_start_speed_threshold=1.0, speed_noise_tolerance=0.05))
    loose = set(selected(moving, ego_start_speed_threshold=1.0, speed_noise_tolerance=0.2))
    default = set(selected(moving, ego_start_speed_threshold=1.0))  # 0.1 < the 0.16 swing
    for tol, got in ((0.05, strict), (0.2, loose), (0.1, default)):
        expected = ref_quality(
            moving,
            candidates(moving),
            lambda f, i, r, tol=tol: ref_edge(
                f, ref_window(f, i, r.type != "unknown"), 1.0, tol, True
            ),
        )
        assert got == set(expected)
    assert wobbly <= strict and wobbly <= default and not (wobbly & loose)


def test_speed_edges_detectors_match_the_devkit_loop_on_random_profiles():
    rng = np.random.default_rng(5)
    speed = np.abs(np.cumsum(rng.normal(0, 0.4, size=600)))
    first = rng.integers(0, 300, size=200)
    last = first + 2 * rng.integers(0, 150, size=200)
    windows = Windows(frame=first, first=first, last=last, end=last + 1)
    f = Frames([], [], [], [], [], speed.tolist())
    for threshold, tol in ((2.0, 0.1), (5.0, 0.5), (0.3, 0.0)):
        rising, falling = speed_edges(speed, windows, threshold, tol)
        for k in range(200):
            window = list(range(first[k], last[k] + 1, 2))
            assert rising[k] == ref_edge(f, window, threshold, tol, True)
            assert falling[k] == ref_edge(f, window, threshold, tol, False)
        assert rising.any() and falling.any() and not rising.all()


@pytest.mark.parametrize("expand", [True, False])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_token_set_fraction(moving, tmp_path, expand, threshold):
    f0 = frames_of(moving.tables[log_name(0)])
    f1 = frames_of(moving.tables[log_name(1)])
    in_set = set(f0.token[60:]) | set(f1.token[::3])  # a block of log 0, every 3rd of log 1
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(sorted(in_set)))
    got = selected(
        moving,
        token_set_path=str(path),
        fraction_in_token_set_threshold=threshold,
        expand_scenarios=expand,
    )

    def keep(f, i, r):
        tokens = (
            {r.token} if expand else {f.token[k] for k in ref_window(f, i, r.type != "unknown")}
        )
        fraction = len(tokens & in_set) / len(tokens)
        return fraction == 1.0 if threshold == 1.0 else fraction > threshold

    expected = ref_quality(moving, candidates(moving), keep)
    assert got == expected and len(got) > 0
    assert {r.log for r in got} <= {log_name(0), log_name(1)}


def test_expand_scenarios_changes_what_the_token_set_filter_sees(moving, tmp_path):
    f0 = frames_of(moving.tables[log_name(0)])
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(f0.token[100:140]))
    args = {"token_set_path": str(path), "fraction_in_token_set_threshold": 0.1}
    single = selected(moving, expand_scenarios=True, **args)
    windowed = selected(moving, expand_scenarios=False, **args)
    assert {r.token for r in single} == set(f0.token[100:140]) & {
        r.token for r in candidates(moving)
    }
    assert windowed and {r.token for r in windowed} != {r.token for r in single}


def test_count_caps_run_before_the_quality_filters(moving):
    rows = candidates(moving)
    got = selected(moving, limit_total_scenarios=200, ego_displacement_minimum_m=1.0)

    def moves(f, i, r):
        return ref_displacement(f, ref_window(f, i, r.type != "unknown")) >= 1.0

    capped_first = ref_quality(moving, flat(ref_limit_total(by_type(rows), 200)), moves)
    assert got == capped_first
    assert len(got) < 200  # the cap ran first: the quality filter then removed some
    filtered_first = flat(ref_limit_total(by_type(ref_quality(moving, rows, moves)), 200))
    assert len(filtered_first) == 200 and got != filtered_first


def test_quality_filters_apply_in_order_and_summary_counts_them(moving):
    from pluto_dvc.params import FilterParams
    from pluto_dvc.selection import resolve_filter, select_scenarios

    flt = resolve_filter(FilterParams(ego_displacement_minimum_m=5.0, ego_stop_speed_threshold=5.0))
    s = select_scenarios(moving.paths, flt, SEQUENTIAL).summary
    rows = candidates(moving)
    moved = ref_quality(
        moving,
        rows,
        lambda f, i, r: ref_displacement(f, ref_window(f, i, r.type != "unknown")) >= 5,
    )
    stopped = ref_quality(
        moving,
        moved,
        lambda f, i, r: ref_edge(f, ref_window(f, i, r.type != "unknown"), 5.0, 0.1, False),
    )
    assert s["removed_by_filter"]["ego_displacement_minimum_m"] == len(rows) - len(moved)
    assert s["removed_by_filter"]["ego_stop_speed_threshold"] == len(moved) - len(stopped)
    assert s["num_scenarios"] == len(stopped) > 0


def test_route_radius_uses_the_devkit_square_patch_and_the_scene_route():
    from shapely.geometry import Polygon, box

    from pluto_dvc.nuplan.log_records import Scenes
    from pluto_dvc.selection.routes import RouteIndex, has_route

    rng = np.random.default_rng(2)
    shapes, ids = [], []
    for k in range(60):  # lane-like strips and a few triangles, roadblocks 100..111
        x0, y0 = rng.uniform(0, 200, size=2)
        if k % 5:
            shapes.append(box(x0, y0, x0 + rng.uniform(5, 30), y0 + 3.5))
        else:
            shapes.append(Polygon([(x0, y0), (x0 + 8, y0), (x0, y0 + 8)]))
        ids.append(100 + k % 12)
    index = RouteIndex(shapely_tree(shapes), np.array(ids, dtype=np.int64))
    routes = [[100, 101], [105], [], [102, 103, 104, 111]]
    scenes = Scenes(
        token=np.zeros(4, dtype="S8"),
        name=np.array(["a", "b", "c", "d"]),
        goal_x=np.zeros(4),
        goal_y=np.zeros(4),
        goal_heading=np.zeros(4),
        roadblock_start=np.cumsum([0] + [len(r) for r in routes]).astype(np.int64),
        roadblock_ids=np.array([i for r in routes for i in r], dtype=np.int64),
    )
    m = 400
    x, y = rng.uniform(-20, 220, size=m), rng.uniform(-20, 220, size=m)
    scene = rng.integers(-1, 4, size=m)
    for radius in (0.5, 4.0, 15.0):
        got = has_route(index, x, y, scene, scenes, radius)
        expected = [
            s >= 0
            and any(
                shape.intersects(box(px - radius, py - radius, px + radius, py + radius))
                and rb in routes[s]
                for shape, rb in zip(shapes, ids, strict=True)
            )
            for px, py, s in zip(x, y, scene, strict=True)
        ]
        assert got.tolist() == expected
        assert 0 < got.sum() < m


def shapely_tree(shapes):
    import shapely

    return shapely.STRtree(np.array(shapes, dtype=object))


ROUTES = ["101", "302 104", "999"]  # scene s drives route ROUTES[s % 3]


@pytest.fixture(scope="module")
def on_map(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from map_factory import write_test_maps_root

    root = tmp_path_factory.mktemp("route")
    tables = {}
    for i in range(2):
        t = build_tables(i, goal_less=())
        set_motion(t, lambda s: 3.5, heading=0.0)  # east along lane 11 into connector 21
        names = t["scene"]["name"]
        t["scene"]["roadblock_ids"] = [ROUTES[int(n.split("-")[1]) % 3] for n in names]
        tables[log_name(i)] = t
    write_test_maps_root(root / "maps")
    return write_dataset(root, tables)


def ref_route(ds: Dataset, rows: list[Ref], radius: float, expand: bool) -> list[Ref]:
    """Lanes (lane_group_fid) and connector polygons (lane_group_connector_fid) of the written
    map intersecting the square patch around the ego, intersected with the scene's route."""
    from map_factory import make_map_layers
    from shapely.geometry import box

    from pluto_dvc.nuplan.locations import LOCATIONS

    layers = make_map_layers(LOCATIONS["us-nv-las-vegas-strip"])
    lanes = layers["lanes_polygons"]
    shapes = list(zip(lanes.geometry, lanes.fields["lane_group_fid"], strict=True))
    conn = layers["lane_connectors"]
    group_of = dict(zip(conn.fields["fid"], conn.fields["lane_group_connector_fid"], strict=True))
    polys = layers["gen_lane_connectors_scaled_width_polygons"]
    shapes += [
        (g, group_of[c])
        for g, c in zip(polys.geometry, polys.fields["lane_connector_fid"], strict=True)
    ]

    def keep(f: Frames, i: int, r: Ref) -> bool:
        origin = i if expand else ref_window(f, i, r.type != "unknown")[0]
        x, y = f.x[origin], f.y[origin]
        patch = box(x - radius, y - radius, x + radius, y + radius)
        near = {int(rb) for g, rb in shapes if g.intersects(patch)}
        t = ds.tables[r.log]
        pc = t["lidar_pc"]
        scene = pc["scene_token"][[tok.hex() for tok in pc["token"]].index(r.token)]
        route = t["scene"]["roadblock_ids"][t["scene"]["token"].index(scene)]
        return bool(near & {int(v) for v in route.split()})

    return ref_quality(ds, rows, keep)


@pytest.mark.parametrize(("radius", "expand"), [(1.0, True), (1.0, False), (12.0, True)])
def test_ego_route_radius_with_a_map(on_map, radius, expand):
    got = selected(on_map, ego_route_radius=radius, expand_scenarios=expand)
    expected = ref_route(on_map, candidates(on_map), radius, expand)
    assert got == expected
    assert 0 < len(got) < len(candidates(on_map))


def test_route_filter_without_maps_is_a_clear_error(moving):
    from pluto_dvc.errors import DataError

    with pytest.raises(DataError, match="ego_route_radius needs the maps"):
        selected(moving, ego_route_radius=5.0)


def test_motion_filters_sample_every_second_frame_from_two_after_the_first():
    """Hand-made 20 Hz trajectory: frame 0 (iteration 0) and the odd frames are far off; the
    devkit's future trajectory only holds frames 2, 4, ..., 20, 1 m apart along +x."""
    from pluto_dvc.selection.logread import EgoMotion
    from pluto_dvc.selection.quality import REAR_AXLE_TO_CENTER_M, displacement

    n = 21
    x = np.where(np.arange(n) % 2 == 0, np.arange(n) / 2.0, 1000.0)
    x[0] = -50.0  # iteration 0 is not part of the future trajectory
    zeros = np.zeros(n)
    ego = EgoMotion(x=x - REAR_AXLE_TO_CENTER_M, y=zeros, heading=zeros, vx=zeros, vy=zeros)
    windows = Windows(
        frame=np.array([0, 0, 4, 6]),
        first=np.array([0, 0, 4, 6]),
        last=np.array([20, 0, 10, 8]),
        end=np.array([21, 1, 11, 9]),
    )
    # samples 2..20 -> x 1..10: 9 m; a one-sample window: 0; 6, 8, 10 -> 2 m; 8 alone -> 0
    assert displacement(ego, windows).tolist() == [9.0, 0.0, 2.0, 0.0]

    # speeds: iteration 0 starts the detectors; odd frames (never sampled) spike above 5 m/s
    speed = np.where(np.arange(n) % 2 == 1, 9.0, 1.0)
    speed[0] = 0.0
    speed[12] = 6.0  # a sampled frame above the threshold
    w = Windows(
        frame=np.array([0, 0]),
        first=np.array([0, 0]),
        last=np.array([10, 20]),
        end=np.array([11, 21]),
    )
    rising, falling = speed_edges(speed, w, 5.0, 0.1)
    assert rising.tolist() == [False, True]  # frames 2..10 stay at 1 m/s; frame 12 rises
    assert falling.tolist() == [False, True]  # and frame 14 falls back
