"""Typed array records of one PLUTO sample, and their flat-dict form (the storage boundary).

Frame: every position / heading is in the ego rear-axle frame at the present step (x forward,
y left, radians counter-clockwise); lengths in metres, speeds in m/s. Sizes: A agents (ego is row
0), T = history + 1 + future steps (present at index ``history``), F future steps, M map polygons,
P points per map polyline, R reference lines, L points per reference line (1 m apart),
S static objects, H = W = cost map pixels.

``PlutoFeatures.to_flat()`` gives ``{"agent.position": ..., "map.point_position": ...,
"cost_maps": ..., "current_state": ..., ...}``; ``PlutoFeatures.from_flat`` inverts it. A
component that is switched off in ``FeatureParams`` is absent (its keys are missing).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np


class FeatureError(Exception):
    """The scenario cannot give a valid sample; ``reason`` says why (recorded by the cache)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Agent categories (agent.category); the ego is 0.
AGENT_CATEGORIES: tuple[str, ...] = ("ego", "vehicle", "pedestrian", "bicycle")
# Static object categories (static_objects.category).
STATIC_CATEGORIES: tuple[str, ...] = ("czone_sign", "barrier", "traffic_cone", "generic_object")
# Map polygon types (map.polygon_type).
POLYGON_TYPES: tuple[str, ...] = ("lane", "lane_connector", "crosswalk")
# Polyline sides (map.point_side).
POLYLINE_SIDES: tuple[str, ...] = ("center", "left", "right")
# Traffic light status (map.polygon_tl_status), as in the nuPlan log.
TL_GREEN, TL_YELLOW, TL_RED, TL_UNKNOWN = 0, 1, 2, 3


class _Record:
    """Shared validate / flat conversion. ``SPEC`` maps a field to (dtype, shape pattern); a
    pattern is a tuple of ints or size names ("A", "T", ...) that must agree across fields."""

    PREFIX: ClassVar[str] = ""
    SPEC: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {}

    def validate(self, sizes: dict[str, int] | None = None) -> dict[str, int]:
        """Check every field's dtype and shape; returns the sizes found (``sizes`` pre-binds)."""
        sizes = dict(sizes or {})
        cls = type(self).__name__
        for name, (dtype, pattern) in self.SPEC.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{cls}.{name} is not a numpy array")
            if value.dtype != np.dtype(dtype):
                raise ValueError(f"{cls}.{name} has dtype {value.dtype}, expected {dtype}")
            if value.ndim != len(pattern):
                raise ValueError(f"{cls}.{name} has shape {value.shape}, expected {pattern}")
            for dim, want in zip(value.shape, pattern, strict=True):
                if isinstance(want, str):
                    want = sizes.setdefault(want, dim)
                if dim != want:
                    raise ValueError(f"{cls}.{name} has shape {value.shape}, expected {pattern}")
        return sizes

    def to_flat(self) -> dict[str, np.ndarray]:
        return {f"{self.PREFIX}{f.name}": getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_flat(cls, flat: dict[str, np.ndarray]) -> Any:
        return cls(**{f.name: flat[f"{cls.PREFIX}{f.name}"] for f in fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def present_in(cls, flat: dict[str, np.ndarray]) -> bool:
        return all(f"{cls.PREFIX}{name}" in flat for name in cls.SPEC)


@dataclass
class AgentFeatures(_Record):
    """Ego (row 0) and the ``max_agents`` agents nearest to the ego centre now (no distance cut)
    over the history, present and future. The ego row's future is label-cleaned: invalid (and
    zeroed) from the first step inside the red-light connector ahead (``CausalInfo``).

    position: (A, T, 2) float32 rear axle (ego) / box centre (others).
    heading: (A, T) float32 rad. velocity: (A, T, 2) float32 m/s.
    shape: (A, T, 2) float32 width, length. category: (A,) int8 (AGENT_CATEGORIES).
    valid_mask: (A, T) bool. target: (A, F, 3) float32 future x, y, heading minus the present
    ones (heading wrapped to [-pi, pi)); 0 where invalid.
    """

    position: np.ndarray
    heading: np.ndarray
    velocity: np.ndarray
    shape: np.ndarray
    category: np.ndarray
    valid_mask: np.ndarray
    target: np.ndarray

    PREFIX: ClassVar[str] = "agent."
    SPEC: ClassVar[dict] = {
        "position": ("float32", ("A", "T", 2)),
        "heading": ("float32", ("A", "T")),
        "velocity": ("float32", ("A", "T", 2)),
        "shape": ("float32", ("A", "T", 2)),
        "category": ("int8", ("A",)),
        "valid_mask": ("bool", ("A", "T")),
        "target": ("float32", ("A", "F", 3)),
    }


@dataclass
class MapFeatures(_Record):
    """Map polygons (lanes, lane connectors, crosswalks) meeting the global +-radius box around
    the ego centre with a centreline point strictly inside the +-radius square of the ego frame.

    point_position / point_vector: (M, 3, P, 2) float32: centreline, left, right boundary, each
    resampled by arc length to P + 1 points: the first P points and the P differences.
    point_orientation: (M, 3, P) float32 rad of the vectors. point_side: (M, 3) int8 0, 1, 2.
    polygon_center: (M, 3) float32 x, y, orientation of centreline point P // 2.
    polygon_position: (M, 2) float32 first centreline point; polygon_orientation: (M,) float32.
    polygon_type: (M,) int8 (POLYGON_TYPES). polygon_on_route: (M,) bool.
    polygon_tl_status: (M,) int8 0 green, 1 yellow, 2 red, 3 unknown (lanes, crosswalks: 3).
    polygon_has_speed_limit: (M,) bool; polygon_speed_limit: (M,) float32 m/s, 0 if none.
    polygon_road_block_id: (M,) int64 roadblock / roadblock connector id (-1 for crosswalks).
    polygon_id: (M,) int64 map fid of the lane / connector / crosswalk.
    valid_mask: (M, P) bool centreline points inside the +-radius square.
    """

    point_position: np.ndarray
    point_vector: np.ndarray
    point_orientation: np.ndarray
    point_side: np.ndarray
    polygon_center: np.ndarray
    polygon_position: np.ndarray
    polygon_orientation: np.ndarray
    polygon_type: np.ndarray
    polygon_on_route: np.ndarray
    polygon_tl_status: np.ndarray
    polygon_has_speed_limit: np.ndarray
    polygon_speed_limit: np.ndarray
    polygon_road_block_id: np.ndarray
    polygon_id: np.ndarray
    valid_mask: np.ndarray

    PREFIX: ClassVar[str] = "map."
    SPEC: ClassVar[dict] = {
        "point_position": ("float32", ("M", 3, "P", 2)),
        "point_vector": ("float32", ("M", 3, "P", 2)),
        "point_orientation": ("float32", ("M", 3, "P")),
        "point_side": ("int8", ("M", 3)),
        "polygon_center": ("float32", ("M", 3)),
        "polygon_position": ("float32", ("M", 2)),
        "polygon_orientation": ("float32", ("M",)),
        "polygon_type": ("int8", ("M",)),
        "polygon_on_route": ("bool", ("M",)),
        "polygon_tl_status": ("int8", ("M",)),
        "polygon_has_speed_limit": ("bool", ("M",)),
        "polygon_speed_limit": ("float32", ("M",)),
        "polygon_road_block_id": ("int64", ("M",)),
        "polygon_id": ("int64", ("M",)),
        "valid_mask": ("bool", ("M", "P")),
    }


@dataclass
class ReferenceLines(_Record):
    """Route-following candidate centrelines starting at the ego's projection.

    position: (R, L, 2) float32, 1 m apart along the line. vector: (R, L, 2) float32 to the next
    point (the last one repeats the previous). orientation: (R, L) float32 rad.
    valid_mask: (R, L) bool (a prefix of each line).
    future_projection: (R, K, 2) float32 the ego future at 1 s steps (K = future seconds)
    projected on each line: arc length from the line start, lateral offset (left positive).
    """

    position: np.ndarray
    vector: np.ndarray
    orientation: np.ndarray
    valid_mask: np.ndarray
    future_projection: np.ndarray

    PREFIX: ClassVar[str] = "reference_line."
    SPEC: ClassVar[dict] = {
        "position": ("float32", ("R", "L", 2)),
        "vector": ("float32", ("R", "L", 2)),
        "orientation": ("float32", ("R", "L")),
        "valid_mask": ("bool", ("R", "L")),
        "future_projection": ("float32", ("R", "K", 2)),
    }


@dataclass
class StaticObjects(_Record):
    """Static objects at the present step within the radius of the ego centre that overlap the
    drivable area.

    position: (S, 2) float32 box centre. heading: (S,) float32. shape: (S, 2) float32 width,
    length. category: (S,) int8 (STATIC_CATEGORIES). valid_mask: (S,) bool (all True in a
    sample; False rows are batch padding).
    """

    position: np.ndarray
    heading: np.ndarray
    shape: np.ndarray
    category: np.ndarray
    valid_mask: np.ndarray

    PREFIX: ClassVar[str] = "static_objects."
    SPEC: ClassVar[dict] = {
        "position": ("float32", ("S", 2)),
        "heading": ("float32", ("S",)),
        "shape": ("float32", ("S", 2)),
        "category": ("int8", ("S",)),
        "valid_mask": ("bool", ("S",)),
    }


@dataclass
class CostMap(_Record):
    """Signed distance to the drivable-area edge, (H, W, 1) float16 metres (``cost_map``).

    Positive inside drivable space, negative outside; exact Euclidean distances between pixel
    centres (a pixel next to the edge is +-res). PLUTO's orientation: ego-frame (x, y) lies at
    column ``W/2 + x/res`` and row ``H/2 - y/res`` (rows run toward -y); pixel [i, j] is centred at
    ``x = (j + 0.5 - W/2) * res``, ``y = (H/2 - i - 0.5) * res``. With
    ``grid_sample(..., align_corners=False)`` the sampling coordinates of (x, y) are
    ``(x / half, -y / half)``, ``half = W * res / 2``.
    """

    cost_maps: np.ndarray

    PREFIX: ClassVar[str] = ""
    SPEC: ClassVar[dict] = {"cost_maps": ("float16", ("H", "W", 1))}


@dataclass
class CausalInfo(_Record):
    """Causal facts for the contrastive augmentation, PLUTO's keys and definitions (``causal``).

    The *ego path* is the route-following centreline the ego drives on, from the projection of
    the ego centre, ``causal.EGO_PATH_M`` long; the *corridor* is that path widened by the ego's
    half width (square ends) united with the ego's box. *Leading objects* are the present
    objects (every tracked object within ``causal.OBSTACLE_RADIUS_M`` of the ego centre, and the
    red lane connectors of the route) whose shape meets the corridor, nearest to the ego's box
    first.

    leading_agent_mask: (A,) bool agents (rows of ``agent.*``) that are leading objects.
    leading_distance: (A,) float32 m distance from the agent's box to the ego's box (0 elsewhere).
    is_waiting_for_red_light_without_lead: () bool the nearest leading object is a red light.
    ego_care_red_light_mask: (M,) bool map polygons (rows of ``map.*``) that are red-light
        leading objects.
    fixed_ego_future_valid_mask: (F,) bool the ego future up to (excluding) the first step whose
        ego centre lies inside the nearest red-light connector ahead (all False when it is inside
        now); also written into ``agent.valid_mask[0, present + 1:]`` (label cleaning).
    free_path_points: (N, 3) float32 x, y, heading of ego-path vertices between
        ``v^2 / 10 + length / 2 + 3`` m and ``end - 3`` m of path progress past the ego centre,
        ``end`` = the nearest leading agent's distance, else ``max(7, v^2 / 3)``, capped by the
        red light's distance (v: ego speed, m/s); N may be 0.
    free_path_valid_mask: (N,) bool all True in a sample (False rows are batch padding).
    interaction_label: (A,) int16 for agents whose future box collides with the ego's future box
        at their closest approach (< ``causal.INTERACTION_COARSE_M`` between positions): the ego
        step minus the agent step of that approach (> 0: the agent was there first); 0 otherwise
        (and for the ego row).
    """

    leading_agent_mask: np.ndarray
    leading_distance: np.ndarray
    is_waiting_for_red_light_without_lead: np.ndarray
    ego_care_red_light_mask: np.ndarray
    fixed_ego_future_valid_mask: np.ndarray
    free_path_points: np.ndarray
    free_path_valid_mask: np.ndarray
    interaction_label: np.ndarray

    PREFIX: ClassVar[str] = "causal."
    SPEC: ClassVar[dict] = {
        "leading_agent_mask": ("bool", ("A",)),
        "leading_distance": ("float32", ("A",)),
        "is_waiting_for_red_light_without_lead": ("bool", ()),
        "ego_care_red_light_mask": ("bool", ("M",)),
        "fixed_ego_future_valid_mask": ("bool", ("F",)),
        "free_path_points": ("float32", ("N", 3)),
        "free_path_valid_mask": ("bool", ("N",)),
        "interaction_label": ("int16", ("A",)),
    }


@dataclass
class PlutoFeatures:
    """One sample. current_state: (7,) float32 x, y, heading (all 0 in the ego frame),
    longitudinal speed, longitudinal acceleration, steering angle, yaw rate.
    origin: (2,) float64 global UTM position of the ego rear axle (float64: UTM needs it).
    angle: () float64 global ego heading, rad. Optional parts are None when switched off."""

    current_state: np.ndarray
    origin: np.ndarray
    angle: np.ndarray
    agent: AgentFeatures
    map: MapFeatures
    reference_line: ReferenceLines | None = None
    static_objects: StaticObjects | None = None
    cost_map: CostMap | None = None
    causal: CausalInfo | None = None

    _PARTS: ClassVar[tuple[tuple[str, type[_Record]], ...]] = (
        ("agent", AgentFeatures),
        ("map", MapFeatures),
        ("reference_line", ReferenceLines),
        ("static_objects", StaticObjects),
        ("cost_map", CostMap),
        ("causal", CausalInfo),
    )

    def validate(self) -> dict[str, int]:
        """Check every array; the agent count A, polygon count M and future length F must agree
        between agents, map and causal info."""
        for name, dtype, shape in (
            ("current_state", "float32", (7,)),
            ("origin", "float64", (2,)),
            ("angle", "float64", ()),
        ):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
                raise ValueError(f"PlutoFeatures.{name} must be a {dtype} array of shape {shape}")
        sizes: dict[str, int] = {}
        for name, _ in self._PARTS:
            part = getattr(self, name)
            if part is not None:
                found = part.validate({k: sizes[k] for k in ("A", "M", "F") if k in sizes})
                for key in ("A", "M", "F"):
                    if key in found:
                        sizes.setdefault(key, found[key])
                for key, value in found.items():
                    sizes.setdefault(f"{name}.{key}", value)
        return sizes

    def to_flat(self) -> dict[str, np.ndarray]:
        flat = {"current_state": self.current_state, "origin": self.origin, "angle": self.angle}
        for name, _ in self._PARTS:
            part = getattr(self, name)
            if part is not None:
                flat.update(part.to_flat())
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, np.ndarray]) -> PlutoFeatures:
        parts = {
            name: (record.from_flat(flat) if record.present_in(flat) else None)
            for name, record in cls._PARTS
        }
        return cls(
            current_state=flat["current_state"], origin=flat["origin"], angle=flat["angle"], **parts
        )
