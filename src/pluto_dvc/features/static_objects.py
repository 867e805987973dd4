"""Static objects (czone signs, barriers, traffic cones, generic objects) at the present step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.features.geometry import box_corners, rotation, wrap_angle
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.records import StaticObjects
from pluto_dvc.nuplan.log_records import TrackedObjects


@dataclass
class PresentStatics:
    """Every static object of the present frame within the radius, in the ego frame, nearest
    first: center (n, 2), heading (n,), width / length (n,) float64, category (n,) int8,
    on_drivable (n,) bool whether its box meets the drivable area, distance (n,) m from the ego
    centre."""

    center: np.ndarray
    heading: np.ndarray
    width: np.ndarray
    length: np.ndarray
    category: np.ndarray
    on_drivable: np.ndarray
    distance: np.ndarray


def present_statics(
    fmap: FeatureMap,
    tracks: TrackedObjects,
    static_category: np.ndarray,
    frame: int,
    origin: np.ndarray,
    angle: float,
    center: np.ndarray,
    radius: float,
) -> PresentStatics:
    """Static objects whose centre is within ``radius`` of the ego ``center`` (PLUTO's rule),
    in the frame of the rear axle ``origin`` / ``angle``."""
    rows = np.arange(*tracks.rows(frame).indices(len(tracks)))
    rows = rows[static_category[rows] >= 0]
    xy = np.stack([tracks.x[rows], tracks.y[rows]], axis=1)
    dist = np.hypot(*(xy - center).T)
    near = dist <= radius
    rows, xy, dist = rows[near], xy[near], dist[near]
    order = np.lexsort((tracks.track_index[rows], dist))
    rows, xy, dist = rows[order], xy[order], dist[order]
    on_drivable = np.zeros(len(rows), dtype=bool)
    if len(rows):
        corners = box_corners(xy, tracks.heading[rows], tracks.width[rows], tracks.length[rows])
        boxes = shapely.polygons(corners)
        hits = fmap.drivable_tree.query(boxes, predicate="intersects")
        on_drivable[np.unique(hits[0])] = True
    return PresentStatics(
        center=(xy - origin) @ rotation(angle),
        heading=wrap_angle(tracks.heading[rows] - angle),
        width=tracks.width[rows],
        length=tracks.length[rows],
        category=static_category[rows],
        on_drivable=on_drivable,
        distance=dist,
    )


def build_static_objects(statics: PresentStatics, max_objects: int, radius: float) -> StaticObjects:
    """The ``max_objects`` nearest objects within ``radius`` of the ego centre that overlap the
    drivable area."""
    keep = np.flatnonzero(statics.on_drivable & (statics.distance <= radius))[:max_objects]
    return StaticObjects(
        position=statics.center[keep].astype(np.float32),
        heading=statics.heading[keep].astype(np.float32),
        shape=np.stack([statics.width[keep], statics.length[keep]], axis=1).astype(np.float32),
        category=statics.category[keep].astype(np.int8),
        valid_mask=np.ones(len(keep), dtype=bool),
    )
