"""The ``ego_route_radius`` filter: is an on-route lane near the ego?

devkit ``_ego_has_route``: the lanes and lane connectors whose polygons intersect the square
patch ``[x - r, x + r] x [y - r, y + r]`` around the ego rear axle (``get_neighbor_vector_map``
via ``get_proximal_map_objects``) give roadblock ids (a lane's ``lane_group_fid``, a connector's
``lane_group_connector_fid``); the scenario passes when one of them is on its route (the
``roadblock_ids`` of the scenario frame's scene).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.nuplan.log_records import Scenes
from pluto_dvc.nuplan.map_reader import MapsRoot, NuPlanMap
from pluto_dvc.selection.logread import SelectionLog


@dataclass(frozen=True)
class RouteIndex:
    """Lane and lane-connector shapes of one map and the roadblock id of each.

    tree: STRtree over (G,) shapes. roadblock: (G,) int64 roadblock (connector) id per shape.
    """

    tree: shapely.STRtree
    roadblock: np.ndarray


_INDEXES: dict[NuPlanMap, RouteIndex] = {}
_LOCK = threading.Lock()


def route_index(nuplan_map: NuPlanMap) -> RouteIndex:
    """The map's RouteIndex, built once per process and map."""
    with _LOCK:
        if nuplan_map not in _INDEXES:
            lanes, connectors = nuplan_map.lanes, nuplan_map.lane_connectors
            connector_shape = np.where(
                shapely.is_missing(connectors.polygon),
                connectors.centerline.linestrings(),
                connectors.polygon,
            )
            shapes = np.concatenate([lanes.polygon, connector_shape])
            ids = np.concatenate([lanes.lane_group_fid, connectors.lane_group_connector_fid])
            _INDEXES[nuplan_map] = RouteIndex(shapely.STRtree(shapes), ids.astype(np.int64))
        return _INDEXES[nuplan_map]


def has_route(
    index: RouteIndex,
    x: np.ndarray,
    y: np.ndarray,
    scene: np.ndarray,
    scenes: Scenes,
    radius: float,
) -> np.ndarray:
    """(m,) bool: a lane or connector within the square patch of half-size ``radius`` (m) around
    (x, y) belongs to a roadblock of the route of ``scene`` (-1 = no scene: no route)."""
    m = len(x)
    patches = shapely.box(x - radius, y - radius, x + radius, y + radius)
    query, shape = index.tree.query(patches, predicate="intersects")
    counts = np.diff(scenes.roadblock_start)
    route_scene = np.repeat(np.arange(len(scenes), dtype=np.int64), counts)
    span = int(max(index.roadblock.max(initial=0), scenes.roadblock_ids.max(initial=0))) + 1
    route_keys = route_scene * span + scenes.roadblock_ids
    candidate_scene = scene[query].astype(np.int64)
    keys = candidate_scene * span + index.roadblock[shape]
    on_route = np.isin(keys, route_keys) & (candidate_scene >= 0) & (index.roadblock[shape] >= 0)
    out = np.zeros(m, dtype=bool)
    out[query[on_route]] = True
    return out


def ego_has_route(
    log: SelectionLog,
    origin: np.ndarray,
    frame: np.ndarray,
    radius: float,
    maps_root: str,
) -> np.ndarray:
    """(m,) bool ``has_route`` for scenarios whose ego is taken at frames ``origin`` and whose
    route is that of the scene of frames ``frame``."""
    assert log.ego is not None
    index = route_index(MapsRoot(maps_root).load(log.meta.location))
    return has_route(
        index,
        log.ego.x[origin],
        log.ego.y[origin],
        log.clock.scene_index[frame],
        log.scenes,
        radius,
    )
