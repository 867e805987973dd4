"""Signed Euclidean distance transform of a binary raster, in numpy (no scipy).

Definition: for a pixel of class c, ``d`` is the Euclidean distance (in pixels) between its centre
and the nearest pixel centre of the other class; the boundary lies half a pixel before that
centre, so ``|sdf| = (d - 0.5) * resolution`` (metres), positive on ``True`` pixels and negative on
``False`` pixels. The zero level runs between the classes; the value of a pixel next to the edge
is +-resolution / 2.

Speed: the exact transform is computed in a band of ``BAND_PX`` pixels around the edge with the
separable scheme ``d^2 = min(h^2, min_s s^2 + g(x+s)^2)`` (g: distance to the other class along
the column, h: along the row) on saturating uint8 squares, which is exact whenever
``d <= BAND_PX``. Farther pixels take the exact transform of a ``COARSE_FACTOR`` times coarser
raster whose cells hold any pixel of the other class (distances between cell centres, bilinearly
upsampled; error within about one cell diagonal), never less than the band's edge. A grid with a single class gets +-``far_m`` everywhere.
"""

from __future__ import annotations

import functools

import numpy as np

BAND_PX = 11  # exact within 11 px (2.1 m at 0.2 m): uint8 holds 11^2 + (11^2 + 13) = 255
_SQUARE_CAP = 255 - BAND_PX * BAND_PX  # saturation of g^2 and h^2 (> BAND_PX^2: "far")
COARSE_FACTOR = 5
MIXED = 2  # label of a coarse cell holding both classes


def _axis_distance(cls: np.ndarray, axis: int, limit: int) -> np.ndarray:
    """(H, W) uint8 distance (px) to the nearest other-class pixel along ``axis``, capped at
    ``limit + 1``."""
    out = np.full(cls.shape, limit + 1, dtype=np.uint8)
    diff = np.empty(cls.shape, dtype=bool)
    n = cls.shape[axis]
    for k in range(min(limit, n - 1), 0, -1):  # descending: nearer transitions overwrite
        if axis == 0:
            d = diff[: n - k]
            np.not_equal(cls[k:], cls[:-k], out=d)
            np.copyto(out[k:], k, where=d)
            np.copyto(out[:-k], k, where=d)
        else:
            d = diff[:, : n - k]
            np.not_equal(cls[:, k:], cls[:, :-k], out=d)
            np.copyto(out[:, k:], k, where=d)
            np.copyto(out[:, :-k], k, where=d)
    return out


def band_squared_distance(cls: np.ndarray, band: int = BAND_PX) -> np.ndarray:
    """(H, W) uint8 squared distance (px^2) to the other class; exact where <= band^2, else some
    value > band^2. ``band`` must be <= BAND_PX (uint8 headroom)."""
    if band > BAND_PX:
        raise ValueError(f"band must be <= {BAND_PX}")
    cap = 255 - band * band

    def squared(g: np.ndarray) -> np.ndarray:
        return np.minimum(g.astype(np.uint16) ** 2, cap).astype(np.uint8)

    g2 = squared(_axis_distance(cls, 0, band))
    best = np.minimum(squared(_axis_distance(cls, 1, band)), g2)
    tmp = np.empty_like(best)
    width = cls.shape[1]
    for s in range(1, min(band, width - 1) + 1):
        s2 = np.uint8(s * s)
        m = width - s
        np.add(g2[:, :m], s2, out=tmp[:, :m])  # candidate column x - s for pixel x
        np.minimum(best[:, s:], tmp[:, :m], out=best[:, s:])
        np.add(g2[:, s:], s2, out=tmp[:, :m])  # candidate column x + s for pixel x
        np.minimum(best[:, :m], tmp[:, :m], out=best[:, :m])
    return best


def _exact_axis_distance(cls: np.ndarray, big: float) -> np.ndarray:
    """(H, W) float32 distance along axis 0 to the nearest pixel of another class / label
    (``big`` if none)."""
    n = cls.shape[0]
    idx = np.arange(n, dtype=np.float32)[:, None]
    change = np.zeros(cls.shape, dtype=bool)  # pixel y differs from pixel y-1
    change[1:] = cls[1:] != cls[:-1]
    # nearest other-class pixel below (smaller y): the last change at or before y, minus one
    last = np.where(change, idx, -np.inf)
    np.maximum.accumulate(last, axis=0, out=last)
    below = idx - (last - 1.0)
    # above (larger y): the first change after y
    nxt = np.where(change, idx, np.inf)
    nxt = np.minimum.accumulate(nxt[::-1], axis=0)[::-1]
    after = np.full(cls.shape, np.inf, dtype=np.float32)
    after[:-1] = nxt[1:] - idx[:-1]
    return np.minimum(np.minimum(below, after), big).astype(np.float32)


def exact_squared_distance(cls: np.ndarray, big: float) -> np.ndarray:
    """(H, W) float32 exact squared distance (px^2) to the other class (at most ``big**2``),
    O(H W^2): small grids."""
    return np.minimum(label_squared_distance(cls.astype(np.int8), big), np.float32(big) ** 2)


def label_squared_distance(labels: np.ndarray, big: float) -> np.ndarray:
    """(H, W) float32 exact squared distance (px^2) of every pixel to the nearest pixel with a
    different label, O(H W^2): small grids. Pixels labelled ``MIXED`` count as 0 (they are the
    other label of every pixel), which makes one pass serve all labels at once."""
    mixed = labels == MIXED
    g2 = np.where(mixed, 0.0, _exact_axis_distance(labels, big)).astype(np.float32) ** 2
    h2 = np.where(mixed, 0.0, _exact_axis_distance(labels.T, big).T).astype(np.float32) ** 2
    x = np.arange(labels.shape[1], dtype=np.float32)
    s2 = (x[:, None] - x[None, :]) ** 2  # (x, x')
    best = (g2[:, None, :] + s2[None]).min(axis=-1)
    return np.minimum(best, h2)


def _block_counts(cls: np.ndarray, f: int) -> np.ndarray:
    """(H/f, W/f) uint8 number of True pixels in each f x f block (f <= 15)."""
    h, w = cls.shape
    a = cls.view(np.uint8).reshape(h // f, f, w)
    rows = a[:, 0].copy()
    for k in range(1, f):
        rows += a[:, k]
    b = rows.reshape(h // f, w // f, f)
    out = b[..., 0].copy()
    for k in range(1, f):
        out += b[..., k]
    return out


@functools.lru_cache(maxsize=8)
def _upsample_weights(n_fine: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear upsampling by ``factor``, pixel-centre aligned: for each fine index the lower and
    upper coarse index (n_fine,) int64 and the weight of the upper one (n_fine,) float32."""
    n_coarse = n_fine // factor
    pos = np.clip((np.arange(n_fine) + 0.5) / factor - 0.5, 0, n_coarse - 1)
    lo = np.floor(pos).astype(np.int64)
    return lo, np.minimum(lo + 1, n_coarse - 1), (pos - lo).astype(np.float32)


def _upsample(coarse: np.ndarray, factor: int) -> np.ndarray:
    """(H*factor, W*factor) float32 bilinear upsampling of a (H, W) float32 grid."""
    lo, hi, t = _upsample_weights(coarse.shape[0] * factor, factor)
    rows = coarse[lo] + (coarse[hi] - coarse[lo]) * t[:, None]
    lo, hi, t = _upsample_weights(coarse.shape[1] * factor, factor)
    return rows[:, lo] + (rows[:, hi] - rows[:, lo]) * t


def signed_distance(cls: np.ndarray, resolution: float, far_m: float | None = None) -> np.ndarray:
    """(H, W) float32 signed distance (m) to the boundary between True and False pixels.

    cls: (H, W) bool; H and W divisible by ``COARSE_FACTOR`` for the fast path (else the exact
    O(H W^2) transform is used throughout). Positive on True pixels. far_m: magnitude when
    there is no boundary at all (default: the grid's diagonal).
    """
    h, w = cls.shape
    if far_m is None:
        far_m = float(np.hypot(h, w) * resolution)
    sign = np.where(cls, np.float32(1.0), np.float32(-1.0))
    if cls.all() or not cls.any():
        return sign * np.float32(far_m)
    f = COARSE_FACTOR
    if h % f or w % f or min(h, w) // f < 2:
        d = np.sqrt(exact_squared_distance(cls, far_m / resolution + 1.0))
        return sign * np.minimum((d - 0.5) * resolution, far_m).astype(np.float32)
    band2 = band_squared_distance(cls)
    # magnitude inside the band from a lookup table on the uint8 squares; beyond it the floor
    floor = (BAND_PX - 0.5) * resolution
    lut = np.full(256, floor, dtype=np.float32)
    inside = np.arange(BAND_PX * BAND_PX + 1)
    lut[inside] = (np.sqrt(inside) - 0.5) * resolution
    magnitude = np.take(lut, band2)
    far = band2 > BAND_PX * BAND_PX
    # beyond the band: distances between the cells of a COARSE_FACTOR times coarser grid. A far
    # True pixel lies in an all-True cell whose nearest cell holding a False pixel sets its
    # distance, and vice versa; the cells used to interpolate a far pixel share its class.
    counts = _block_counts(cls, f)
    labels = np.full(counts.shape, MIXED, dtype=np.int8)
    labels[counts == 0] = 0
    labels[counts == f * f] = 1
    cells = np.sqrt(label_squared_distance(labels, far_m / (resolution * f) + 1.0))
    far_mag = _upsample(cells, f)
    far_mag *= np.float32(f * resolution)
    far_mag -= np.float32(0.5 * resolution)
    np.clip(far_mag, np.float32(floor), np.float32(far_m), out=far_mag)
    np.copyto(magnitude, far_mag, where=far)
    np.negative(magnitude, out=magnitude, where=~cls)
    return magnitude
