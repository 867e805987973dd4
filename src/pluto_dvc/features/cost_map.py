"""The cost map: signed distance (m) to the edge of the drivable space around the ego.

Drivable space = the union of every lane and lane-connector polygon that reaches into the grid,
minus the boxes of obstacles (static objects and stationary vehicles). Sign: **positive inside
drivable space, negative outside** (see ``distance_transform`` for the exact definition and
accuracy). Layout: (size, size, 1) float16, pixel [i, j] centred at ego-frame
``x = (j + 0.5) * res - half``, ``y = (i + 0.5) * res - half`` (``raster.Grid``).
"""

from __future__ import annotations

import numpy as np

from pluto_dvc.features.distance_transform import signed_distance
from pluto_dvc.features.geometry import box_corners, rotation
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.raster import Grid, winding_numbers
from pluto_dvc.features.records import CostMap

_OBSTACLE_WEIGHT = 1024  # obstacles count apart from lanes (lane overlaps stay below it)


def drivable_rows(fmap: FeatureMap, origin: np.ndarray, grid: Grid) -> np.ndarray:
    """(n,) lane-like rows whose bounds meet the grid (the grid's axis-aligned global bounds)."""
    reach = grid.half * np.sqrt(2.0)
    b = fmap.shape_bounds
    hit = (
        (b[:, 0] <= origin[0] + reach)
        & (b[:, 2] >= origin[0] - reach)
        & (b[:, 1] <= origin[1] + reach)
        & (b[:, 3] >= origin[1] - reach)
    )
    return np.flatnonzero(hit)


def obstacle_edges(
    center: np.ndarray, heading: np.ndarray, width: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """(4K, 4) counter-clockwise edges of K boxes given in the ego frame."""
    if len(center) == 0:
        return np.zeros((0, 4))
    corners = box_corners(center, heading, width, length)  # (K, 4, 2) counter-clockwise
    return np.concatenate([corners, np.roll(corners, -1, axis=1)], axis=-1).reshape(-1, 4)


def drivable_mask(
    fmap: FeatureMap, origin: np.ndarray, angle: float, grid: Grid, obstacles: np.ndarray
) -> np.ndarray:
    """(size, size) bool: pixel centres inside a lane / connector and outside every obstacle.

    obstacles: (E, 4) ego-frame counter-clockwise edges (``obstacle_edges``)."""
    edges = fmap.edges_of(drivable_rows(fmap, origin, grid))
    rot = rotation(angle)
    local = np.concatenate([(edges[:, :2] - origin) @ rot, (edges[:, 2:] - origin) @ rot], axis=1)
    weights = np.concatenate([np.ones(len(local)), np.full(len(obstacles), _OBSTACLE_WEIGHT)])
    winding = winding_numbers(np.concatenate([local, obstacles]), weights, grid)
    return (winding > 0) & (winding < _OBSTACLE_WEIGHT)


def build_cost_map(mask: np.ndarray, grid: Grid) -> CostMap:
    """The (size, size, 1) float16 signed distance of a drivable mask."""
    sdf = signed_distance(mask, grid.resolution, far_m=2.0 * grid.half)
    return CostMap(cost_maps=sdf.astype(np.float16)[..., None])
