"""Oriented boxes as arrays: corners and a vectorised separating-axis overlap test.

A box row is ``(x, y, heading, length, width)``: centre (m), heading (rad), extent along and
across the heading (m).
"""

from __future__ import annotations

import numpy as np


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 5) boxes -> (N, 4, 2) corners, counter-clockwise from front-left."""
    x, y, h, length, width = boxes.T
    c, s = np.cos(h), np.sin(h)
    a = np.array([0.5, -0.5, -0.5, 0.5])[None, :] * length[:, None]
    b = np.array([0.5, 0.5, -0.5, -0.5])[None, :] * width[:, None]
    return np.stack(
        [
            x[:, None] + c[:, None] * a - s[:, None] * b,
            y[:, None] + s[:, None] * a + c[:, None] * b,
        ],
        axis=-1,
    )


def boxes_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(P, 5), (P, 5) -> (P,) bool: pair k overlaps once both boxes grow by ``margin`` / 2 a side."""
    grow = np.array([0.0, 0.0, 0.0, margin, margin])
    ca, cb = box_corners(a + grow), box_corners(b + grow)
    overlap = np.ones(len(a), bool)
    for boxes in (a, b):
        h = boxes[:, 2]
        for axis in (np.stack([np.cos(h), np.sin(h)], -1), np.stack([-np.sin(h), np.cos(h)], -1)):
            pa = np.einsum("pkd,pd->pk", ca, axis)
            pb = np.einsum("pkd,pd->pk", cb, axis)
            overlap &= (pa.max(1) >= pb.min(1)) & (pb.max(1) >= pa.min(1))
    return overlap


def overlapping_pairs(boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(N, 5) -> (K, 2) index pairs i < j of overlapping boxes (after growing by ``margin``)."""
    reach = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4]) + margin
    d = np.hypot(*(boxes[:, None, :2] - boxes[None, :, :2]).transpose(2, 0, 1))
    i, j = np.nonzero(np.triu(d < reach[:, None] + reach[None, :], k=1))
    if len(i) == 0:
        return np.zeros((0, 2), np.int64)
    hit = boxes_overlap(boxes[i], boxes[j], margin)
    return np.stack([i[hit], j[hit]], axis=1)
