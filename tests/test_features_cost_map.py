"""The cost map: PLUTO's orientation (rows toward -y), exact signed distances (OpenCV's precise
Euclidean transform against a brute-force one), fillPoly rasterisation, the obstacles PLUTO clears
(static objects, parked agents) and the builder's cost map on known roads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from feature_factory import (
    Box,
    LogSpec,
    ego_drive,
    make_log,
    moving_box,
    straight_road_layers,
    write_map,
)

from pluto_dvc.features import LogFeatureBuilder
from pluto_dvc.features.cost_map import Grid, build_cost_map, parked_agents, signed_distance
from pluto_dvc.params import FeatureParams


def brute_distance(cls: np.ndarray) -> np.ndarray:
    """Distance (px) of every pixel centre to the nearest centre of the other class."""
    ij = np.stack(np.meshgrid(*map(np.arange, cls.shape), indexing="ij"), -1).reshape(-1, 2)
    flat = cls.reshape(-1)
    out = np.full(flat.shape, np.inf)
    for value in (True, False):
        mine, other = ij[flat == value], ij[flat != value]
        if len(other):
            out[flat == value] = np.sqrt(((mine[:, None] - other[None]) ** 2).sum(-1).min(1))
    return out.reshape(cls.shape)


@pytest.mark.parametrize("seed", range(3))
def test_signed_distance_is_the_exact_euclidean_transform(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((50, 60), dtype=np.uint8)
    for _ in range(5):
        r0, r1 = np.sort(rng.integers(0, 50, 2))
        c0, c1 = np.sort(rng.integers(0, 60, 2))
        mask[r0 : r1 + 1, c0 : c1 + 1] ^= 1
    yy, xx = np.mgrid[:50, :60]
    mask ^= ((yy - 25) ** 2 + (xx - 20) ** 2 < 100).astype(np.uint8)
    ref = brute_distance(mask.astype(bool)) * np.where(mask, 0.2, -0.2)
    sdf = signed_distance(mask, 0.2, far_m=1e3)
    assert np.allclose(sdf, ref, atol=1e-4)
    # the stored float16 map is numpy's rounding of the float32 one, bit for bit
    stored = build_cost_map(mask, Grid(60, 0.2)).cost_maps[..., 0]
    assert stored.dtype == np.float16
    assert np.array_equal(stored.view(np.uint16), sdf.astype(np.float16).view(np.uint16))


def test_signed_distance_single_class():
    assert np.all(signed_distance(np.ones((20, 20), np.uint8), 0.5, far_m=7.0) == 7.0)
    assert np.all(signed_distance(np.zeros((20, 20), np.uint8), 0.5, far_m=7.0) == -7.0)


def test_grid_pixel_centres_follow_plutos_orientation():
    grid = Grid(600, 0.2)
    assert grid.column_x()[0] == pytest.approx(-59.9) and grid.column_x()[-1] == pytest.approx(59.9)
    assert grid.row_y()[0] == pytest.approx(59.9) and grid.row_y()[-1] == pytest.approx(-59.9)
    # ego-frame (x, y) at column 300 + x / 0.2, row 300 - y / 0.2 (continuous pixel coordinates)
    assert grid.column_x()[325] == pytest.approx((325 + 0.5 - 300) * 0.2)
    assert grid.row_y()[325] == pytest.approx((300 - 325 - 0.5) * 0.2)


def test_parked_agents_are_plutos():
    t = 101
    position = np.zeros((4, t, 2))
    valid = np.ones((4, t), dtype=bool)
    position[1, :, 0] = np.linspace(0.0, 0.99, t)  # moved 0.99 m: parked
    position[2, :, 0] = np.linspace(0.0, 1.01, t)  # 1.01 m: not
    valid[3, 50:] = False  # valid at 50 steps only, still: parked
    valid[0, 51:] = False  # valid at 51 steps: parked
    assert parked_agents(position, valid).tolist() == [True, True, False, True]
    valid[3, 49] = False  # 49 steps: not parked
    assert parked_agents(position, valid).tolist() == [True, True, False, False]
    # only the first and last valid positions count, not the path in between
    position[1, 40, 1] = 30.0
    assert parked_agents(position, valid)[1]


@pytest.fixture(scope="module")
def road(tmp_path_factory: pytest.TempPathFactory):
    return write_map(tmp_path_factory.mktemp("road"), straight_road_layers())


def test_cost_map_on_a_straight_two_lane_road(road):
    """Lanes y = 0 (ego) and y = -3.5, each 3.5 m wide: the road spans y in [-5.25, 1.75]. A parked
    car (2 m x 4.5 m) stands on the right lane 10 m ahead; a cone off the road and a cone 70 m
    ahead (beyond the 60 m half side) are not obstacles of the drivable area there."""
    n = 240
    x, y, h, v = ego_drive(n, (0.0, 0.0), 0.0, 0.0)
    boxes = [Box(1, f, "vehicle", 10.0, -3.5, 0.0, 2.0, 4.5) for f in range(n)]
    boxes += moving_box(2, n, "vehicle", (-25.0, -3.5), 0.0, 5.0)  # moving: 1 m in 0.2 s
    log = make_log(LogSpec(x, y, h, v, route=(100,), boxes=boxes))
    s = LogFeatureBuilder(FeatureParams(), log, road).build(40)
    cost = s["cost_maps"][..., 0].astype(np.float64)
    assert cost.shape == (600, 600)
    # PLUTO's orientation: y = 1.75 lies at row 300 - 1.75 / 0.2 = 291.25 (continuous), y = -5.25
    # at 326.25; fillPoly covers the pixels whose centres lie within half a pixel of the road
    # (rows round(290.75) .. round(325.75) = 291 .. 326 of pixel-centre coordinates)
    column = cost[:, 100]  # x = -39.9 m, far from the parked car
    inside = np.flatnonzero(column > 0)
    assert inside.tolist() == list(range(291, 327))
    # exact distances: inside, to the nearest outside row; outside, to the nearest inside row
    rows = np.arange(600)
    expected = np.where(
        (rows >= 291) & (rows <= 326),
        0.2 * np.minimum(rows - 290, 327 - rows),
        -0.2 * np.where(rows < 291, 291 - rows, rows - 326),
    )
    assert np.allclose(column, expected, rtol=1e-3, atol=1e-3)
    assert column[291] == pytest.approx(0.2, abs=1e-3) and column[290] == pytest.approx(
        -0.2, abs=1e-3
    )
    # the whole map is the road band everywhere but at the parked car
    far_from_car = np.abs(Grid(600, 0.2).column_x() - 10.0) > 8.0
    assert np.allclose(cost[:, far_from_car], column[:, None], atol=1e-3)
    # the parked car is carved out: its centre (x = 10, y = -3.5: row 317, column 349) lies
    # about its half width (1 m) from the free space; beside it (y = -1.9: row 309) is free
    assert cost[317, 349] == pytest.approx(-1.0, abs=0.21)
    assert cost[309, 349] > 0.0
    # the moving car (at x = -23 now) is not an obstacle


def test_cost_map_follows_the_ego_heading(road):
    n = 240
    x, y, h, v = ego_drive(n, (0.0, 0.0), math.pi, 0.0)  # facing west on the same road
    log = make_log(LogSpec(x, y, h, v, route=(100,)))
    s = LogFeatureBuilder(FeatureParams(build_reference_lines=False), log, road).build(40)
    cost = s["cost_maps"][..., 0].astype(np.float64)
    # rotated by pi: the road now spans ego-frame y in [-1.75, 5.25], rows 300 - 5.25 / 0.2 - 0.5
    # = 273.25 .. 300 + 1.75 / 0.2 - 0.5 = 308.25: rows 273 .. 308; the left (+y) side is on top
    inside = np.flatnonzero(cost[:, 300] > 0)
    assert inside.tolist() == list(range(273, 309))
    assert np.all(cost[273:309] > 0) and np.all(cost[:273] < 0) and np.all(cost[309:] < 0)


def test_static_objects_are_obstacles_within_the_half_side_whatever_the_radius(road):
    """PLUTO clears every static object within 60 m of the rear axle from the drivable area,
    independently of the feature radius (here 30 m: the cone 40 m ahead is no static-object
    feature, yet the cost map is negative at it)."""
    n = 240
    x, y, h, v = ego_drive(n, (0.0, 0.0), 0.0, 0.0)
    cone = [Box(1, f, "traffic_cone", 40.0, 0.0, 0.0, 1.0, 1.0) for f in range(n)]
    log = make_log(LogSpec(x, y, h, v, route=(100,), boxes=cone))
    s = LogFeatureBuilder(FeatureParams(radius_m=30.0), log, road).build(40)
    assert s["static_objects.position"].shape == (0, 2)
    # the cone's centre: column 300 + 40 / 0.2 - 0.5, row 300 - 0 - 0.5 -> pixel (299/300, 499/500)
    assert float(s["cost_maps"][300, 500, 0]) < 0.0
    s = LogFeatureBuilder(FeatureParams(), log, road).build(40)
    assert s["static_objects.position"].shape == (1, 2)
    assert float(s["cost_maps"][300, 500, 0]) < 0.0
