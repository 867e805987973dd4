"""Scanline rasterisation of many polygons at once, in numpy (nonzero winding rule).

The grid is a square of ``size`` x ``size`` pixels of ``resolution`` metres centred on the ego
(ego frame). Pixel ``[i, j]`` (row i, column j) has its centre at
``x = (j + 0.5) * resolution - half``, ``y = (i + 0.5) * resolution - half`` with
``half = size * resolution / 2``: columns run along +x (forward), rows along +y (left). A pixel is
inside a polygon when its centre is (the ray-crossing rule; centres exactly on an edge may go
either way).

Polygons are given as directed edges ``(E, 4)`` = ``x0, y0, x1, y1`` and a weight per edge.
Exterior rings counter-clockwise and holes clockwise give a winding number of +weight inside the
polygon, so the weighted sum over many polygons counts how many cover each pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A square raster centred on the ego: ``size`` pixels per side, ``resolution`` m per pixel."""

    size: int
    resolution: float

    @property
    def half(self) -> float:
        """Half the side length, m."""
        return self.size * self.resolution / 2.0

    def pixel_centers(self) -> np.ndarray:
        """(size,) float64 centre coordinate of each column (x) / row (y), m."""
        return (np.arange(self.size) + 0.5) * self.resolution - self.half


def winding_numbers(edges: np.ndarray, weights: np.ndarray, grid: Grid) -> np.ndarray:
    """(size, size) int32 weighted winding number of every pixel centre.

    edges: (E, 4) float64 ``x0, y0, x1, y1`` in the ego frame (edges of closed rings);
    weights: (E,) integer-valued weight of each edge's polygon. An edge crossing the scanline of a row
    upwards (y0 < y1) contributes ``-weight`` to the pixels right of the crossing, downwards
    ``+weight`` (a ray cast towards -x), which gives +weight inside a counter-clockwise ring.
    """
    n = grid.size
    out_width = n + 1  # column n collects crossings right of the grid (dropped)
    x0, y0, x1, y1 = (edges[:, k] for k in range(4))
    v0 = (y0 + grid.half) / grid.resolution - 0.5  # row coordinate of the end points
    v1 = (y1 + grid.half) / grid.resolution - 0.5
    lo = np.clip(np.ceil(np.minimum(v0, v1)), 0, n).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(v0, v1)), 0, n).astype(np.int64)
    # rows i with lo <= i < hi: the row centre lies in [min(y), max(y)) of the edge
    keep = (hi > lo) & (np.minimum(x0, x1) < grid.half)
    if not keep.any():
        return np.zeros((n, n), dtype=np.int32)
    x0, y0, x1, y1, lo, hi = x0[keep], y0[keep], x1[keep], y1[keep], lo[keep], hi[keep]
    w = np.where(y1 > y0, -1.0, 1.0) * weights[keep]
    counts = hi - lo
    starts = np.cumsum(counts) - counts
    total = int(counts.sum())
    edge = np.repeat(np.arange(len(counts)), counts)
    row = lo[edge] + (np.arange(total) - starts[edge])
    y_row = (row + 0.5) * grid.resolution - grid.half
    slope = (x1 - x0) / (y1 - y0)
    x_cross = x0[edge] + (y_row - y0[edge]) * slope[edge]
    # first column whose centre lies right of the crossing
    col = np.floor((x_cross + grid.half) / grid.resolution - 0.5).astype(np.int64) + 1
    col = np.clip(col, 0, n)
    acc = np.bincount(row * out_width + col, weights=w[edge], minlength=n * out_width)
    acc = np.rint(acc).astype(np.int32)  # integer weights: exact, and a faster cumsum
    return np.cumsum(acc.reshape(n, out_width), axis=1, dtype=np.int32)[:, :n]


def ring_edges(rings: list[np.ndarray]) -> np.ndarray:
    """(E, 4) directed edges of closed rings given as (K, 2) vertex arrays (closing edge added)."""
    parts = []
    for ring in rings:
        ring = np.asarray(ring, dtype=np.float64)
        if len(ring) >= 2 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        if len(ring) < 3:
            continue
        parts.append(np.concatenate([ring, np.roll(ring, -1, axis=0)], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 4))
