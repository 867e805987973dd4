"""Plane geometry of the synthetic road network: vectors, bends, Bezier connectors, polygons.

Pure functions of numpy arrays (x, y in metres; angles in radians, counter-clockwise positive);
``road_network`` composes them into streets and junctions.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon

POINT_SPACING_M = 0.25  # centreline / boundary point spacing


def left_normal(v: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 2) rotated +90 degrees."""
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def signed_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad, CCW positive) that turns direction a into direction b."""
    return float(math.atan2(cross(a, b), float(np.dot(a, b))))


def uniform_params(points: np.ndarray, params: np.ndarray, spacing: float) -> np.ndarray:
    """Parameters of evenly spaced arc-length stations (about ``spacing`` apart, ends kept) along a
    dense polyline ``points`` (M, 2) sampled at increasing ``params`` (M,)."""
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    n = max(2, round(cum[-1] / spacing) + 1)
    return np.interp(np.linspace(0.0, cum[-1], n), cum, params)


def raw_bend(kind: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised bend profile g(t) and g'(t) on t in [0, 1]; g = g' = 0 at both ends."""
    if kind == "bump":
        return np.sin(np.pi * t) ** 2, np.pi * np.sin(2 * np.pi * t)
    if kind == "s":
        a, da = np.sin(2 * np.pi * t), 2 * np.pi * np.cos(2 * np.pi * t)
        b, db = np.sin(np.pi * t) ** 2, np.pi * np.sin(2 * np.pi * t)
        return a * b, da * b + a * db
    return np.zeros_like(t), np.zeros_like(t)


def bend_constants(kind: str) -> tuple[float, float]:
    """(peak |g|, peak |g''|) of a raw bend profile, measured once on a fine grid."""
    t = np.linspace(0.0, 1.0, 20001)
    g, dg = raw_bend(kind, t)
    return float(np.abs(g).max()), float(np.abs(np.gradient(dg, t)).max())


BEND_PEAKS = {kind: bend_constants(kind) for kind in ("bump", "s")}


def cubic_bezier(p0: np.ndarray, t0: np.ndarray, p3: np.ndarray, t3: np.ndarray) -> np.ndarray:
    """Control points (4, 2) of a smooth curve leaving p0 along unit t0 and reaching p3 along
    unit t3. Turns follow a near-circular arc through the tangent
    lines' intersection; near-straight moves use handles of a third of the chord."""
    chord = float(np.linalg.norm(p3 - p0))
    theta = signed_angle(t0, t3)
    k0 = k3 = chord / 3.0
    if abs(theta) > math.radians(15.0):
        a, b = np.linalg.solve(np.column_stack([t0, t3]), p3 - p0)  # p0 + a t0 = p3 - b t3
        if a > 0 and b > 0:
            ratio = 4.0 / 3.0 * math.tan(abs(theta) / 4) / math.tan(abs(theta) / 2)
            k0, k3 = ratio * a, ratio * b
    return np.stack([p0, p0 + k0 * t0, p3 - k3 * t3, p3])


def bezier_eval(ctrl: np.ndarray, u: np.ndarray, order: int = 0) -> np.ndarray:
    """Point (order 0), first or second derivative (N, 2) of a cubic Bezier at u (N,)."""
    p0, p1, p2, p3 = ctrl
    u = u[:, None]
    v = 1.0 - u
    if order == 0:
        return v**3 * p0 + 3 * v**2 * u * p1 + 3 * v * u**2 * p2 + u**3 * p3
    if order == 1:
        return 3 * v**2 * (p1 - p0) + 6 * v * u * (p2 - p1) + 3 * u**2 * (p3 - p2)
    return 6 * v * (p2 - 2 * p1 + p0) + 6 * u * (p3 - 2 * p2 + p1)


def connector_lines(ctrl: np.ndarray, width: float) -> tuple[np.ndarray, float]:
    """(3, N, 2) centreline, left and right boundary of a Bezier connector about 0.25 m apart,
    and the smallest turn radius (m) along it."""
    u_dense = np.linspace(0.0, 1.0, max(64, int(np.linalg.norm(ctrl[3] - ctrl[0]) / 0.05)))
    u = uniform_params(bezier_eval(ctrl, u_dense), u_dense, POINT_SPACING_M)
    center = bezier_eval(ctrl, u)
    center[0], center[-1] = ctrl[0], ctrl[3]
    normal = left_normal(unit(bezier_eval(ctrl, u, 1)))
    d1, d2 = bezier_eval(ctrl, u_dense, 1), bezier_eval(ctrl, u_dense, 2)
    curvature = np.abs(cross(d1, d2)) / np.linalg.norm(d1, axis=1) ** 3
    radius = 1.0 / max(float(curvature.max()), 1e-9)
    half = 0.5 * width
    return np.stack([center, center + half * normal, center - half * normal]), radius


def rectangle(
    origin: np.ndarray, along: np.ndarray, d0: float, d1: float, right: float, left: float
) -> Polygon:
    """Rectangle spanning ``d0..d1`` along unit ``along`` from ``origin`` and ``right..left``
    across (m, positive to the left of ``along``)."""
    side = left_normal(along)
    a, b = origin + d0 * along, origin + d1 * along
    return Polygon([a + right * side, b + right * side, b + left * side, a + left * side])


def line_intersection(p: np.ndarray, u: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Intersection of the lines p + s u and q + r v (not parallel)."""
    s, _ = np.linalg.solve(np.column_stack([u, -v]), q - p)
    return p + s * u


def clean_polygon(points: list[np.ndarray] | np.ndarray) -> Polygon:
    """Polygon through ``points`` with consecutive near-duplicates (< 1 mm) dropped."""
    pts = np.asarray(points, dtype=np.float64)
    keep = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1) > 1e-3
    return Polygon(pts[keep])


def largest_polygon(geometry: shapely.Geometry) -> Polygon:
    """``geometry`` if a Polygon, else its largest polygon part (drops slivers of a cut)."""
    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, Polygon)]
    return max(parts, key=lambda g: g.area)
