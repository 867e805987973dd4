"""The cost map (PLUTO's): signed distance (m) to the edge of the drivable area around the ego.

Drivable area: every lane and lane connector whose shape meets the global axis-aligned box of
+-half the grid side (60 m) around the rear axle, each filled with OpenCV ``fillPoly``; then the
boxes of obstacles are cleared with ``fillConvexPoly``: every static object whose centre is within
that half side of the rear axle, and every *parked* agent (``parked_agents``: valid at
``PARKED_MIN_VALID_STEPS`` or more of the T steps, displacement between its first and last valid
position under ``PARKED_MAX_DISPLACEMENT_M``), with its box at the present step.

Values: ``sdf = (EDT(mask) - EDT(not mask)) * resolution`` where EDT is the exact Euclidean
distance from a pixel centre to the nearest pixel centre of the other class (OpenCV
``distanceTransform`` with ``DIST_L2`` and ``DIST_MASK_PRECISE``: the values of SciPy's
``distance_transform_edt`` that PLUTO uses). Positive on drivable pixels; a pixel next to the
edge is +-resolution. A grid with a single class gets +-``2 * half`` everywhere.

Orientation (PLUTO's, binding for the collision loss; see ``records.CostMap``): ego-frame (x, y)
lies at column ``W/2 + x/res`` and row ``H/2 - y/res`` (rows run toward -y); pixel [i, j] is
centred at ``x = (j + 0.5 - W/2) * res``, ``y = (H/2 - i - 0.5) * res``. Polygons are rasterised
with sub-pixel vertices (``fillPoly`` shift bits) in that pixel-centre convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely

from pluto_dvc.features.geometry import box_corners, rotation
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.records import CostMap

PARKED_MIN_VALID_STEPS = 50
PARKED_MAX_DISPLACEMENT_M = 1.0
_SHIFT = 8  # fillPoly fractional bits
_SCALE = 1 << _SHIFT

cv2.setNumThreads(1)  # one sample per core: the builder's workers parallelise


@dataclass(frozen=True)
class Grid:
    """A square raster centred on the ego rear axle: ``size`` pixels per side, ``resolution`` m
    per pixel, in PLUTO's orientation (module docstring)."""

    size: int
    resolution: float

    @property
    def half(self) -> float:
        """Half the side length, m."""
        return self.size * self.resolution / 2.0

    def column_x(self) -> np.ndarray:
        """(size,) float64 ego-frame x of each column's pixel centres (increasing)."""
        return (np.arange(self.size) + 0.5) * self.resolution - self.half

    def row_y(self) -> np.ndarray:
        """(size,) float64 ego-frame y of each row's pixel centres (decreasing: rows run to -y)."""
        return self.half - (np.arange(self.size) + 0.5) * self.resolution


def drivable_rows(fmap: FeatureMap, origin: np.ndarray, half: float) -> np.ndarray:
    """(n,) ascending lane-like rows whose shape meets the global box of +-``half`` around
    ``origin``."""
    x, y = float(origin[0]), float(origin[1])
    rows = fmap.polygon_tree.query(
        shapely.box(x - half, y - half, x + half, y + half), predicate="intersects"
    )
    return np.sort(rows[rows < fmap.num_lane_like]).astype(np.int64)


def to_pixels(xy: np.ndarray, grid: Grid) -> np.ndarray:
    """(..., 2) ego-frame points -> (..., 2) int32 fixed-point (column, row) for OpenCV."""
    u = grid.size / 2 + xy[..., 0] / grid.resolution - 0.5
    v = grid.size / 2 - xy[..., 1] / grid.resolution - 0.5
    return np.rint(np.stack([u, v], axis=-1) * _SCALE).astype(np.int32)


def parked_agents(position: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(A,) bool PLUTO's parked agents: valid at PARKED_MIN_VALID_STEPS or more steps and moved
    less than PARKED_MAX_DISPLACEMENT_M between the first and last valid position.
    position (A, T, 2), valid (A, T) bool (the caller excludes the ego)."""
    count = valid.sum(axis=1)
    first = np.argmax(valid, axis=1)
    last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    rows = np.arange(len(valid))
    moved = np.hypot(*(position[rows, last] - position[rows, first]).T)
    return (count >= PARKED_MIN_VALID_STEPS) & (moved < PARKED_MAX_DISPLACEMENT_M)


def drivable_mask(
    fmap: FeatureMap,
    origin: np.ndarray,
    angle: float,
    grid: Grid,
    obstacle_corners: np.ndarray,
) -> np.ndarray:
    """(size, size) uint8 1 on drivable pixels, 0 elsewhere.

    obstacle_corners: (K, 4, 2) ego-frame box corners to clear (``box_corners``)."""
    mask = np.zeros((grid.size, grid.size), dtype=np.uint8)
    points, offsets = fmap.rings_of(drivable_rows(fmap, origin, grid.half))
    if len(points):
        pixels = to_pixels((points - origin) @ rotation(angle), grid)
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            cv2.fillPoly(mask, [pixels[a:b]], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    if len(obstacle_corners):
        for box in to_pixels(obstacle_corners, grid):
            cv2.fillConvexPoly(mask, box, 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def obstacle_corners(
    center: np.ndarray, heading: np.ndarray, width: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """(K, 4, 2) corners of K ego-frame boxes (empty (0, 4, 2) when K = 0)."""
    if len(center) == 0:
        return np.zeros((0, 4, 2))
    return box_corners(center, heading, width, length)


def signed_distance(mask: np.ndarray, resolution: float, far_m: float) -> np.ndarray:
    """(H, W) float32 exact signed distance (m) of a uint8 0/1 mask, positive on 1 pixels."""
    inside = cv2.countNonZero(mask)
    if inside == 0:
        return np.full(mask.shape, -far_m, dtype=np.float32)
    if inside == mask.size:
        return np.full(mask.shape, far_m, dtype=np.float32)
    d_in = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.compare(mask, 0, cv2.CMP_EQ)  # 255 where mask == 0
    d_out = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    sdf = cv2.subtract(d_in, d_out)
    sdf *= np.float32(resolution)
    return sdf


def build_cost_map(mask: np.ndarray, grid: Grid) -> CostMap:
    """The (size, size, 1) float16 signed distance of a drivable mask."""
    sdf = signed_distance(mask, grid.resolution, far_m=2.0 * grid.half)
    # float32 -> float16, rounded to nearest like numpy's astype (OpenCV's cast is 2x faster)
    return CostMap(cost_maps=cv2.add(sdf, 0.0, dtype=cv2.CV_16F)[..., None])
