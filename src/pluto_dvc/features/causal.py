"""Causal facts of a scenario (PLUTO's definitions) and the red-light label cleaning.

Definitions (read from PLUTO's feature builder and scenario manager; our own code):

- *Ego path*: the route-following path the ego drives on. PLUTO searches the route graph
  (Dijkstra) from the on-route lane whose polygon holds the rear axle (smallest heading error).
  Ours picks, among the reference-line candidate paths (``reference_lines.candidate_paths``), one
  that runs through that lane; between branches, the one the expert's last future position lies
  closest to (PLUTO's search takes the branch towards the route's end, which the expert follows
  whenever it follows its route). Without any candidate path: a straight line along the heading.
  It is trimmed from the projection of the ego centre to ``EGO_PATH_M`` beyond and resampled
  every ``PATH_STEP_M`` (PLUTO keeps the map's baseline vertices, so its free-path points follow
  the map's vertex spacing; ours do not depend on it).
- *Corridor*: the trimmed path buffered by half the ego width (square caps), united with the
  ego's box. *Obstacles*: every tracked object present now whose centre is within
  ``OBSTACLE_RADIUS_M`` of the ego centre (vehicles, pedestrians, bicycles are *dynamic*, the rest
  *static*) and every red lane connector of the route. *Leading objects*: obstacles meeting the
  corridor, sorted by the distance from their shape to the ego's box.
- ``is_waiting_for_red_light_without_lead``: the nearest leading object is a red light.
- Label cleaning: the ego future is invalid from the first step whose ego centre lies inside the
  nearest red-light leading object (``fixed_ego_future_valid_mask``).
- Free path and interaction label: see ``records.CausalInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from pluto_dvc.features.agents import EGO_LENGTH, EGO_REAR_AXLE_TO_CENTER, EGO_WIDTH
from pluto_dvc.features.geometry import box_corners, project_point, rotation, wrap_angle
from pluto_dvc.features.map_index import FeatureMap
from pluto_dvc.features.records import AgentFeatures, CausalInfo
from pluto_dvc.features.reference_lines import CandidatePath, direction_near
from pluto_dvc.nuplan.log_records import TrackedObjects

EGO_PATH_M = 50.0
PATH_STEP_M = 1.0  # ego-path resampling (PLUTO: the map's baseline vertices, whatever spacing)
OBSTACLE_RADIUS_M = 50.0
INTERACTION_COARSE_M = 4.0
# PLUTO places the ego box of the interaction check 1.67 m ahead of the rear axle (its value, not
# the vehicle's 1.461 m): kept so that the same situations get the same labels.
INTERACTION_EGO_OFFSET_M = 1.67
FREE_PATH_MARGIN_M = 3.0
FREE_PATH_BRAKE_START = 5.0  # m/s^2: start = v^2 / (2 * 5) + length / 2
FREE_PATH_BRAKE_END = 1.5  # m/s^2: end = max(7, v^2 / (2 * 1.5))
FREE_PATH_MIN_END_M = 7.0

DYNAMIC, STATIC, RED_LIGHT = 0, 1, 2


@dataclass
class EgoPath:
    """The trimmed ego path in the ego frame: points (N, 2), heading (N,) rad, progress (N,) m
    along the path past the projection of the ego centre (0 at the first point)."""

    points: np.ndarray
    heading: np.ndarray
    progress: np.ndarray


@dataclass
class Obstacles:
    """Present obstacles in the ego frame: polygons (n,) shapely, kind (n,) DYNAMIC / STATIC /
    RED_LIGHT, ref (n,) int64 the track index (objects) or map row (red lights)."""

    polygons: np.ndarray
    kind: np.ndarray
    ref: np.ndarray


@dataclass
class LeadingObjects:
    """Obstacles meeting the corridor, nearest first: index into ``Obstacles`` (k,) and the
    distance (k,) m from each to the ego's box."""

    index: np.ndarray
    distance: np.ndarray


def ego_box() -> shapely.Polygon:
    """The ego's box at the present step, ego frame."""
    corners = box_corners(
        np.array([[EGO_REAR_AXLE_TO_CENTER, 0.0]]),
        np.zeros(1),
        np.array([EGO_WIDTH]),
        np.array([EGO_LENGTH]),
    )
    return shapely.Polygon(corners[0])


def starting_rows(
    fmap: FeatureMap, on_route: np.ndarray, rear_axle: np.ndarray, heading: float
) -> np.ndarray:
    """On-route lane-like rows whose shape holds the rear axle, smallest heading error first."""
    rows = fmap.polygon_tree.query(shapely.Point(*map(float, rear_axle)), predicate="intersects")
    rows = np.unique(rows[rows < fmap.num_lane_like])
    rows = rows[on_route[rows]]
    error = [
        abs(float(wrap_angle(direction_near(fmap, int(r), rear_axle) - heading))) for r in rows
    ]
    return rows[np.argsort(error, kind="stable")] if len(rows) else rows


def choose_path(
    paths: list[CandidatePath], start_rows: np.ndarray, expert_end: np.ndarray
) -> CandidatePath | None:
    """The candidate path the ego drives on (module docstring); None when there is none.

    expert_end: (2,) global rear axle at the last future step."""
    if not paths:
        return None
    best_start = int(start_rows[0]) if len(start_rows) else -1
    pool = [p for p in paths if best_start in p.rows] or paths
    lateral = [float(np.min(np.hypot(*(p.points - expert_end).T))) for p in pool]
    return pool[int(np.argmin(lateral))]


def trimmed_ego_path(
    path: CandidatePath | None, origin: np.ndarray, angle: float, center: np.ndarray
) -> EgoPath:
    """The ego path from the ego centre's projection to EGO_PATH_M beyond, ego frame."""
    rot = rotation(angle)
    if path is None or len(path.points) < 2:
        progress = np.arange(0.0, EGO_PATH_M + 1e-9, 1.0)
        start = (center - origin) @ rot
        pts = start + np.stack([progress, np.zeros_like(progress)], axis=1)
        return EgoPath(pts, np.zeros(len(pts)), progress)
    pts, cum = path.points, path.cum
    seg = np.diff(pts, axis=0)
    s0, _ = project_point(center, pts, cum)
    s1 = min(s0 + EGO_PATH_M, float(cum[-1]))
    s = s0 + np.arange(0.0, s1 - s0 + 1e-9, PATH_STEP_M)
    xy = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=1)
    seg_heading = np.arctan2(seg[:, 1], seg[:, 0])
    which = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    return EgoPath((xy - origin) @ rot, wrap_angle(seg_heading[which] - angle), s - s0)


def corridor(path: EgoPath, box: shapely.Polygon) -> shapely.Geometry:
    line = shapely.LineString(path.points) if len(path.points) >= 2 else None
    if line is None or line.length <= 0.0:
        return box
    return shapely.union(line.buffer(EGO_WIDTH / 2, cap_style="square"), box)


def leading_objects(
    obstacles: Obstacles, area: shapely.Geometry, box: shapely.Polygon
) -> LeadingObjects:
    if len(obstacles.polygons) == 0:
        return LeadingObjects(np.zeros(0, np.int64), np.zeros(0))
    hit = np.flatnonzero(shapely.intersects(obstacles.polygons, area))
    distance = shapely.distance(obstacles.polygons[hit], box)
    order = np.argsort(distance, kind="stable")
    return LeadingObjects(hit[order], distance[order])


def fixed_future_mask(
    red_polygon: shapely.Geometry | None, future_xy: np.ndarray, future_heading: np.ndarray
) -> np.ndarray:
    """(F,) bool: False from the first future step whose ego centre (rear axle moved
    EGO_REAR_AXLE_TO_CENTER along the heading) lies inside ``red_polygon``."""
    mask = np.ones(len(future_xy), dtype=bool)
    if red_polygon is None:
        return mask
    cx = future_xy[:, 0] + EGO_REAR_AXLE_TO_CENTER * np.cos(future_heading)
    cy = future_xy[:, 1] + EGO_REAR_AXLE_TO_CENTER * np.sin(future_heading)
    inside = np.flatnonzero(shapely.contains_xy(red_polygon, cx, cy))
    if inside.size:
        mask[inside[0] :] = False
    return mask


def interaction_label(agents: AgentFeatures, present: int) -> np.ndarray:
    """(A,) int16 PLUTO's interaction label (``records.CausalInfo``), from the unmasked ego
    future (rear axle) and the agents' valid future positions."""
    a = agents.position.shape[0]
    label = np.zeros(a, dtype=np.int16)
    if a <= 1:
        return label
    future = slice(present + 1, agents.position.shape[1])
    ego = agents.position[0, future].astype(np.float64)  # (F, 2)
    ego_heading = agents.heading[0, future].astype(np.float64)
    other = agents.position[1:, future].astype(np.float64)  # (A-1, F, 2)
    valid = agents.valid_mask[1:, future]
    f = ego.shape[0]
    lo = np.where(valid[..., None], other, np.inf).min(axis=1)
    hi = np.where(valid[..., None], other, -np.inf).max(axis=1)
    near_box = np.all(
        (lo <= ego.max(axis=0) + INTERACTION_COARSE_M)
        & (hi >= ego.min(axis=0) - INTERACTION_COARSE_M),
        axis=1,
    )
    rows = np.flatnonzero(near_box)
    if rows.size == 0:
        return label
    pts = other[rows].reshape(-1, 2)  # (n * F_agent, 2); squared distances by expansion
    d2 = (pts**2).sum(1)[:, None] + (ego**2).sum(1)[None] - 2.0 * (pts @ ego.T)
    d2 = np.where(valid[rows].reshape(-1, 1), np.maximum(d2, 0.0), np.inf)
    d2 = d2.reshape(len(rows), -1)  # (n, F_agent * F_ego)
    best = np.argmin(d2, axis=1)
    close = d2[np.arange(len(rows)), best] < INTERACTION_COARSE_M**2
    rows, best = rows[close], best[close]
    if rows.size == 0:
        return label
    t_agent, t_ego = best // f, best % f
    agent_boxes = shapely.polygons(
        box_corners(
            other[rows, t_agent],
            agents.heading[1 + rows, present + 1 + t_agent].astype(np.float64),
            agents.shape[1 + rows, present + 1 + t_agent, 0].astype(np.float64),
            agents.shape[1 + rows, present + 1 + t_agent, 1].astype(np.float64),
        )
    )
    h = ego_heading[t_ego]
    centre = ego[t_ego] + INTERACTION_EGO_OFFSET_M * np.stack([np.cos(h), np.sin(h)], axis=1)
    n = len(rows)
    ego_boxes = shapely.polygons(
        box_corners(centre, h, np.full(n, EGO_WIDTH), np.full(n, EGO_LENGTH))
    )
    collide = shapely.intersects(agent_boxes, ego_boxes)
    label[1 + rows[collide]] = (t_ego - t_agent)[collide]
    return label


def free_path_points(
    path: EgoPath, speed: float, lead_distance: float | None, red_distance: float | None
) -> np.ndarray:
    """(N, 3) float32 x, y, heading of the ego-path points of the free path."""
    start = speed**2 / (2 * FREE_PATH_BRAKE_START) + EGO_LENGTH / 2
    end = max(FREE_PATH_MIN_END_M, speed**2 / (2 * FREE_PATH_BRAKE_END))
    if lead_distance is not None:
        end = lead_distance
    if red_distance is not None:
        end = min(end, red_distance)
    keep = (path.progress >= start + FREE_PATH_MARGIN_M) & (
        path.progress <= end - FREE_PATH_MARGIN_M
    )
    return np.concatenate([path.points[keep], path.heading[keep, None]], axis=1).astype(np.float32)


def present_obstacles(
    tracks: TrackedObjects,
    frame: int,
    agent_category: np.ndarray,
    origin: np.ndarray,
    angle: float,
    center: np.ndarray,
    fmap: FeatureMap,
    red_rows: np.ndarray,
) -> Obstacles:
    """Every tracked object of ``frame`` within OBSTACLE_RADIUS_M of the ego ``center`` and the
    red connectors ``red_rows`` (map-index rows), as ego-frame polygons.
    agent_category: (B,) int8 per box row (> 0: vehicle, pedestrian, bicycle = dynamic)."""
    rows = np.arange(*tracks.rows(frame).indices(len(tracks)))
    xy = np.stack([tracks.x[rows], tracks.y[rows]], axis=1)
    near = np.hypot(*(xy - center).T) < OBSTACLE_RADIUS_M
    rows, xy = rows[near], xy[near]
    rot = rotation(angle)
    corners = box_corners(
        (xy - origin) @ rot, tracks.heading[rows] - angle, tracks.width[rows], tracks.length[rows]
    )
    objects = shapely.polygons(corners) if len(rows) else np.zeros(0, dtype=object)
    lights = fmap.polygon_tree.geometries.take(red_rows)
    if len(lights):
        lights = shapely.transform(lights, lambda c: (c - origin) @ rot)
    return Obstacles(
        polygons=np.concatenate([objects, lights]).astype(object),
        kind=np.concatenate(
            [np.where(agent_category[rows] > 0, DYNAMIC, STATIC), np.full(len(red_rows), RED_LIGHT)]
        ).astype(np.int8),
        ref=np.concatenate([tracks.track_index[rows], red_rows]).astype(np.int64),
    )


@dataclass
class CausalScene:
    """What the builder needs from the analysis: the leading objects and the cleaned mask."""

    path: EgoPath
    obstacles: Obstacles
    leading: LeadingObjects
    fixed_mask: np.ndarray


def analyse(
    path: EgoPath, obstacles: Obstacles, future_xy: np.ndarray, future_heading: np.ndarray
) -> CausalScene:
    """Leading objects on the ego path and the label-cleaned ego future mask."""
    box = ego_box()
    leading = leading_objects(obstacles, corridor(path, box), box)
    red = [i for i in leading.index.tolist() if obstacles.kind[i] == RED_LIGHT]
    polygon = obstacles.polygons[red[0]] if red else None
    return CausalScene(
        path, obstacles, leading, fixed_future_mask(polygon, future_xy, future_heading)
    )


def build_causal(
    scene: CausalScene,
    agents: AgentFeatures,
    agent_tracks: np.ndarray,
    present: int,
    map_rows: np.ndarray,
) -> CausalInfo:
    """CausalInfo of a scene. agent_tracks: (A-1,) track index of agent rows 1..; map_rows: (M,)
    map-index rows of the map features."""
    a = agents.position.shape[0]
    obstacles, leading = scene.obstacles, scene.leading
    leading_mask = np.zeros(a, dtype=bool)
    leading_distance = np.zeros(a, dtype=np.float32)
    care = np.zeros(len(map_rows), dtype=bool)
    row_of_track = {int(t): k + 1 for k, t in enumerate(agent_tracks.tolist())}
    lead_distance = red_distance = None
    for i, dist in zip(leading.index.tolist(), leading.distance.tolist(), strict=True):
        kind, ref = int(obstacles.kind[i]), int(obstacles.ref[i])
        if kind == DYNAMIC and ref in row_of_track:
            row = row_of_track[ref]
            leading_mask[row] = True
            leading_distance[row] = dist
            if lead_distance is None:
                lead_distance = dist
        elif kind == RED_LIGHT:
            care |= map_rows == ref
            if red_distance is None:
                red_distance = dist
    waiting = bool(len(leading.index)) and obstacles.kind[leading.index[0]] == RED_LIGHT
    speed = float(np.hypot(*agents.velocity[0, present]))
    points = free_path_points(scene.path, speed, lead_distance, red_distance)
    return CausalInfo(
        leading_agent_mask=leading_mask,
        leading_distance=leading_distance,
        is_waiting_for_red_light_without_lead=np.array(waiting, dtype=bool),
        ego_care_red_light_mask=care,
        fixed_ego_future_valid_mask=scene.fixed_mask.copy(),
        free_path_points=points,
        free_path_valid_mask=np.ones(len(points), dtype=bool),
        interaction_label=interaction_label(agents, present),
    )
