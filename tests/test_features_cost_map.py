"""The cost map: scanline rasterisation against shapely, the signed distance transform against a
brute-force one, and the builder's cost map on a straight two-lane road with known distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from feature_factory import Box, LogSpec, ego_drive, make_log, straight_road_layers, write_map

from pluto_dvc.features import LogFeatureBuilder
from pluto_dvc.features.distance_transform import (
    BAND_PX,
    band_squared_distance,
    exact_squared_distance,
    signed_distance,
)
from pluto_dvc.features.raster import Grid, ring_edges, winding_numbers
from pluto_dvc.params import FeatureParams


def brute_squared_distance(cls: np.ndarray) -> np.ndarray:
    """Squared distance (px^2) of every pixel centre to the nearest centre of the other class."""
    ij = np.stack(np.meshgrid(*map(np.arange, cls.shape), indexing="ij"), -1).reshape(-1, 2)
    flat = cls.reshape(-1)
    out = np.full(flat.shape, np.inf)
    for value in (True, False):
        mine, other = ij[flat == value], ij[flat != value]
        if len(other):
            out[flat == value] = ((mine[:, None] - other[None]) ** 2).sum(-1).min(1)
    return out.reshape(cls.shape)


def random_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for _ in range(5):
        r0, r1 = np.sort(rng.integers(0, shape[0], 2))
        c0, c1 = np.sort(rng.integers(0, shape[1], 2))
        mask[r0 : r1 + 1, c0 : c1 + 1] ^= True
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask ^= (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 5) ** 2
    return mask


@pytest.mark.parametrize("seed", range(4))
def test_distance_transform_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, (50, 60))
    ref = brute_squared_distance(mask)
    assert np.allclose(exact_squared_distance(mask, big=1e3), ref)
    band = band_squared_distance(mask).astype(np.float64)
    near = ref <= BAND_PX**2
    assert np.array_equal(band[near], ref[near])  # exact in the band
    assert np.all(band[~near] > BAND_PX**2)  # and flagged beyond it
    sdf = signed_distance(mask, 0.2)
    assert np.array_equal(sdf > 0, mask)
    true = (np.sqrt(ref) - 0.5) * 0.2
    assert np.allclose(np.abs(sdf[near]), true[near], atol=1e-5)
    assert np.all(np.abs(np.abs(sdf[~near]) - true[~near]) < 1.45)  # coarse: < a cell diagonal
    assert np.all(np.abs(sdf[~near]) >= (BAND_PX - 0.5) * 0.2 - 1e-6)


def test_distance_transform_single_class_and_odd_sizes():
    assert np.all(signed_distance(np.ones((20, 20), bool), 0.5, far_m=7.0) == 7.0)
    assert np.all(signed_distance(np.zeros((20, 20), bool), 0.5, far_m=7.0) == -7.0)
    mask = np.zeros((23, 17), bool)  # not divisible by the coarse factor: exact everywhere
    mask[5:12, 3:9] = True
    ref = brute_squared_distance(mask)
    sdf = signed_distance(mask, 1.0)
    assert np.allclose(np.abs(sdf), np.sqrt(ref) - 0.5, atol=1e-5)


def test_winding_raster_matches_shapely():
    grid = Grid(80, 0.5)  # (vertices avoid pixel centres: a centre on an edge may go either way)
    polys = [
        shapely.Polygon([(-15.03, -15.1), (10.07, -12.02), (12.1, 8.3), (-5.2, 14.1)]),  # ccw
        shapely.Polygon([(0, 0), (0, 18), (25, 18), (25, 0)]),  # clockwise: must be oriented
        shapely.Polygon(
            [(-19, -19), (-2, -19), (-2, -2), (-19, -2)],
            [[(-14, -14), (-14, -6), (-6, -6), (-6, -14)]],
        ),  # with a hole
        shapely.box(15, -30, 40, -25),  # partly outside the grid
    ]
    oriented = shapely.orient_polygons(np.array(polys, dtype=object))
    rings = []
    for p in oriented:
        rings.append(np.asarray(p.exterior.coords))
        rings.extend(np.asarray(r.coords) for r in p.interiors)
    edges = ring_edges(rings)
    inside = winding_numbers(edges, np.ones(len(edges)), grid) > 0.5
    c = grid.pixel_centers()
    xx, yy = np.meshgrid(c, c)  # rows along y, columns along x
    expected = shapely.contains_xy(shapely.union_all(polys), xx, yy)
    assert np.array_equal(inside, expected)
    count = winding_numbers(edges, np.ones(len(edges)), grid)
    overlap = shapely.contains_xy(shapely.intersection(polys[0], polys[1]), xx, yy)
    assert np.all(count[overlap] == 2)  # overlaps count twice, never cancel


@pytest.fixture(scope="module")
def road(tmp_path_factory: pytest.TempPathFactory):
    return write_map(tmp_path_factory.mktemp("road"), straight_road_layers())


def test_cost_map_on_a_straight_two_lane_road(road):
    """Lanes y = 0 (ego) and y = -3.5, each 3.5 m wide: the road spans y in [-5.25, 1.75]. A parked
    car (2 m x 4.5 m) stands on the right lane 10 m ahead."""
    n = 240
    x, y, h, v = ego_drive(n, (0.0, 0.0), 0.0, 0.0)
    boxes = [Box(1, f, "vehicle", 10.0, -3.5, 0.0, 2.0, 4.5) for f in range(n)]
    log = make_log(LogSpec(x, y, h, v, route=(100,), boxes=boxes))
    s = LogFeatureBuilder(FeatureParams(), log, road).build(40)
    cost = s["cost_maps"][..., 0].astype(np.float64)
    assert cost.shape == (600, 600)
    c = (np.arange(600) + 0.5) * 0.2 - 60.0  # pixel centres (rows: y, columns: x)

    def at(px: float, py: float) -> float:
        return cost[int(np.argmin(np.abs(c - py))), int(np.argmin(np.abs(c - px)))]

    # positive inside: the ego's lane centre is 1.75 m from the left road edge
    assert at(-30.0, 0.1) == pytest.approx(1.65, abs=0.11)
    assert at(-30.0, -5.1) == pytest.approx(0.15, abs=0.11)
    assert at(-30.0, -1.7) == pytest.approx(3.45, abs=0.75)  # road centre: beyond the exact band
    # negative outside
    assert at(-30.0, 2.1) == pytest.approx(-0.35, abs=0.11)
    assert at(-30.0, 3.9) == pytest.approx(-2.15, abs=0.11)
    assert at(-30.0, 20.1) == pytest.approx(-18.35, abs=1.0)
    assert at(-30.0, -30.1) == pytest.approx(-24.85, abs=1.0)
    # the parked car is carved out: negative at its centre, about -1 m (its half width)
    assert at(10.1, -3.5) == pytest.approx(-0.9, abs=0.2)
    assert at(10.1, -1.9) > 0.0  # the gap beside it, between car and lane line
    # sign everywhere: rows by y
    rows_in = (c > -5.25) & (c < 1.75)
    far_from_car = np.abs(c - 10.0) > 5.0
    assert np.all(cost[np.ix_(rows_in, far_from_car)] > 0)
    assert np.all(cost[np.ix_(~rows_in, np.ones(600, bool))] < 0)
    # the gradient points into the road: values grow towards the middle
    column = cost[:, 100]
    top = np.flatnonzero(rows_in)[-1]
    assert column[top - 5] > column[top] > 0 > column[top + 1] > column[top + 5]


def test_cost_map_follows_the_ego_heading(road):
    n = 240
    x, y, h, v = ego_drive(n, (0.0, 0.0), math.pi, 0.0)  # facing west on the same road
    log = make_log(LogSpec(x, y, h, v, route=(100,)))
    s = LogFeatureBuilder(FeatureParams(build_reference_lines=False), log, road).build(40)
    cost = s["cost_maps"][..., 0].astype(np.float64)
    c = (np.arange(600) + 0.5) * 0.2 - 60.0
    # rotated by pi: the road now spans ego-frame y in [-1.75, 5.25]
    rows_in = (c > -1.75) & (c < 5.25)
    assert np.all(cost[rows_in] > 0) and np.all(cost[~rows_in] < 0)
