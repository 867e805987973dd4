"""Vectorised 2-D geometry: frames, angles, arc-length resampling, projection onto polylines.

Frames: *global* is UTM metres; the *ego frame* has its origin at the ego rear axle at the present
step, x forward, y to the left (counter-clockwise angles). ``to_ego_frame`` maps global points into
it: translate by ``-origin``, then rotate by ``-angle``.
"""

from __future__ import annotations

import numpy as np


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def rotation(angle: float) -> np.ndarray:
    """(2, 2) float64 matrix R such that ``points @ R`` rotates row vectors by ``-angle``.

    Rotating by minus the ego heading maps global directions into the ego frame.
    """
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def to_ego_frame(points: np.ndarray, origin: np.ndarray, angle: float) -> np.ndarray:
    """(..., 2) global points -> ego frame (float64)."""
    return (np.asarray(points, dtype=np.float64) - origin) @ rotation(angle)


def vectors_to_ego_frame(vectors: np.ndarray, angle: float) -> np.ndarray:
    """(..., 2) global directions (velocities, differences) -> ego frame (no translation)."""
    return np.asarray(vectors, dtype=np.float64) @ rotation(angle)


def arc_length(polyline: np.ndarray) -> np.ndarray:
    """(N,) cumulative arc length of an (N, 2) polyline, starting at 0."""
    seg = np.hypot(*np.diff(polyline, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample_at(polyline: np.ndarray, cum: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(K, 2) points at arc lengths ``s`` along a polyline with cumulative lengths ``cum``.

    Arc lengths outside [0, cum[-1]] are clamped to the ends.
    """
    return np.stack([np.interp(s, cum, polyline[:, 0]), np.interp(s, cum, polyline[:, 1])], -1)


def resample_polyline(polyline: np.ndarray, num_points: int) -> np.ndarray:
    """(num_points, 2) float64 points equally spaced by arc length, both ends kept.

    A degenerate polyline (one point, or zero length) repeats its first point.
    """
    polyline = np.asarray(polyline, dtype=np.float64)
    cum = arc_length(polyline)
    if len(polyline) < 2 or cum[-1] <= 0.0:
        return np.repeat(polyline[:1], num_points, axis=0)
    return resample_at(polyline, cum, np.linspace(0.0, cum[-1], num_points))


def project_point(point: np.ndarray, line: np.ndarray, cum: np.ndarray) -> tuple[float, float]:
    """Arc length and signed lateral offset (left positive) of one (2,) point on an (N, 2)
    polyline with cumulative lengths ``cum`` (N,): the nearest point over all segments (the
    first on ties); an (1, 2) line gives (0, distance)."""
    if len(line) < 2:
        return 0.0, float(np.hypot(*(point - line[0])))
    a = line[:-1]
    ab = line[1:] - a
    ap = point - a
    len2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    t = np.clip(np.einsum("ij,ij->i", ap, ab) / len2, 0.0, 1.0)
    diff = ap - t[:, None] * ab
    k = int(np.argmin(np.einsum("ij,ij->i", diff, diff)))
    cross = ab[k, 0] * ap[k, 1] - ab[k, 1] * ap[k, 0]
    d = float(np.hypot(*diff[k])) * (1.0 if cross >= 0 else -1.0)
    return float(cum[k] + t[k] * np.sqrt(len2[k])), d


def project_onto_polylines(
    points: np.ndarray, lines: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project points onto each of R polylines: arc length along the line and signed offset.

    points: (K, 2); lines: (R, L, 2); valid: (R, L) bool, a valid prefix of each line (a line
    needs at least 2 valid points, else it gets zeros).
    Returns ``(s, d)``, both (R, K) float64: arc length from the line's first point to the nearest
    point of the line, and the lateral distance to it, positive on the left of the line.
    """
    r, length = lines.shape[:2]
    k = points.shape[0]
    if r == 0 or length < 2:
        return np.zeros((r, k)), np.zeros((r, k))
    a = lines[:, :-1]  # (R, L-1, 2)
    ab = lines[:, 1:] - a
    seg_valid = valid[:, :-1] & valid[:, 1:]
    seg_len2 = np.maximum((ab**2).sum(-1), 1e-12)  # (R, L-1)
    ap = points[None, :, None, :] - a[:, None]  # (R, K, L-1, 2)
    t = np.clip((ap * ab[:, None]).sum(-1) / seg_len2[:, None], 0.0, 1.0)  # (R, K, L-1)
    diff = ap - t[..., None] * ab[:, None]
    dist2 = (diff**2).sum(-1)
    dist2 = np.where(seg_valid[:, None], dist2, np.inf)
    best = np.argmin(dist2, axis=-1)  # (R, K)
    seg_lengths = np.sqrt(seg_len2) * seg_valid
    cum = np.concatenate([np.zeros((r, 1)), np.cumsum(seg_lengths, axis=1)], axis=1)
    rows = np.arange(r)[:, None]
    t_best = np.take_along_axis(t, best[..., None], axis=-1)[..., 0]
    s = cum[rows, best] + t_best * np.sqrt(seg_len2[rows, best])
    ab_best = ab[rows, best]  # (R, K, 2)
    ap_best = np.take_along_axis(ap, best[..., None, None], axis=2)[:, :, 0]  # (R, K, 2)
    cross = ab_best[..., 0] * ap_best[..., 1] - ab_best[..., 1] * ap_best[..., 0]
    d = np.sqrt(np.take_along_axis(dist2, best[..., None], axis=-1)[..., 0]) * np.sign(cross)
    has_line = seg_valid.any(axis=1)[:, None]
    return np.where(has_line, s, 0.0), np.where(has_line, d, 0.0)


def box_corners(center: np.ndarray, heading: np.ndarray, width: np.ndarray, length: np.ndarray):
    """(K, 4, 2) corners of oriented boxes, counter-clockwise: front-left, rear-left, rear-right,
    front-right.

    center (K, 2), heading (K,), width / length (K,): length along the heading.
    """
    c, s = np.cos(heading), np.sin(heading)
    fwd = np.stack([c, s], -1) * (length / 2)[:, None]
    left = np.stack([-s, c], -1) * (width / 2)[:, None]
    return np.stack(
        [center + fwd + left, center - fwd + left, center - fwd - left, center + fwd - left], 1
    )
