"""Map polygon features: lanes, lane connectors and crosswalks around the ego, in the ego frame.

The polylines were resampled once per map (``map_index``); per scenario this module only selects
the polygons within the radius, transforms their points and attaches route, traffic-light and
speed-limit attributes.
"""

from __future__ import annotations

import numpy as np
import shapely

from pluto_dvc.features.geometry import rotation
from pluto_dvc.features.map_index import CONNECTOR, FeatureMap
from pluto_dvc.features.records import TL_UNKNOWN, MapFeatures


def polygons_within(fmap: FeatureMap, center: np.ndarray, radius: float) -> np.ndarray:
    """(M',) int64 ascending rows of the polygons whose shape meets the global axis-aligned box
    of +-``radius`` m around ``center`` (the ego centre; PLUTO's ``get_proximal_map_objects``)."""
    x, y = float(center[0]), float(center[1])
    box = shapely.box(x - radius, y - radius, x + radius, y + radius)
    rows = fmap.polygon_tree.query(box, predicate="intersects")
    return np.sort(rows).astype(np.int64)


def traffic_light_status(
    fmap: FeatureMap, rows: np.ndarray, connector_ids: np.ndarray, status: np.ndarray
) -> np.ndarray:
    """(len(rows),) int8 status of each polygon row from the frame's (connector id, status)
    pairs (ids ascending); TL_UNKNOWN for lanes, crosswalks and connectors without a status."""
    out = np.full(len(rows), TL_UNKNOWN, dtype=np.int8)
    if connector_ids.size == 0 or rows.size == 0:
        return out
    is_conn = fmap.kind[rows] == CONNECTOR
    fids = fmap.fid[rows[is_conn]]
    pos = np.minimum(np.searchsorted(connector_ids, fids), connector_ids.size - 1)
    hit = connector_ids[pos] == fids
    out[np.flatnonzero(is_conn)[hit]] = status[pos[hit]]
    return out


def build_map_features(
    fmap: FeatureMap,
    rows: np.ndarray,
    origin: np.ndarray,
    angle: float,
    radius: float,
    on_route: np.ndarray,
    tl_status: np.ndarray,
) -> tuple[MapFeatures, np.ndarray]:
    """Features of the candidate polygon ``rows``; polygons with no centreline point strictly
    inside the +-radius square of the ego frame are dropped (PLUTO's rule: a square, not a circle,
    so polygons in its corners are kept). on_route / tl_status: per candidate row. Returns the features and
    the (M,) map-index rows kept, in feature order."""
    lines = fmap.polylines[rows]  # (M', 3, P+1, 2) global
    local = (lines - origin) @ rotation(angle)
    positions = local[:, :, :-1]
    vectors = np.diff(local, axis=2)
    centre = positions[:, 0]
    valid = np.all(np.abs(centre) < radius, axis=-1)  # (M', P)
    keep = valid.any(axis=1)
    rows, positions, vectors, valid = rows[keep], positions[keep], vectors[keep], valid[keep]
    on_route, tl_status = on_route[keep], tl_status[keep]

    orientation = np.arctan2(vectors[..., 1], vectors[..., 0])
    m, _, p = orientation.shape
    mid = p // 2
    speed = fmap.speed_limit[rows]
    has_speed = ~np.isnan(speed)
    features = MapFeatures(
        point_position=positions.astype(np.float32),
        point_vector=vectors.astype(np.float32),
        point_orientation=orientation.astype(np.float32),
        point_side=np.tile(np.arange(3, dtype=np.int8), (m, 1)),
        polygon_center=np.concatenate(
            [positions[:, 0, mid], orientation[:, 0, mid, None]], axis=-1
        ).astype(np.float32),
        polygon_position=positions[:, 0, 0].astype(np.float32),
        polygon_orientation=orientation[:, 0, 0].astype(np.float32),
        polygon_type=fmap.kind[rows].astype(np.int8),
        polygon_on_route=on_route.astype(bool),
        polygon_tl_status=tl_status.astype(np.int8),
        polygon_has_speed_limit=has_speed,
        polygon_speed_limit=np.where(has_speed, speed, 0.0).astype(np.float32),
        polygon_road_block_id=fmap.roadblock_id[rows].astype(np.int64),
        polygon_id=fmap.fid[rows].astype(np.int64),
        valid_mask=valid,
    )
    return features, rows
