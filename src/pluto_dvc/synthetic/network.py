"""The synthetic road network: the in-memory model that the map writer and the traffic simulator share.

All coordinates are global UTM metres of the location's zone (``MapLocation.epsg``); polylines are
``(N, 2) float64`` arrays ordered in the driving direction with about 0.25 m between points.
Ids are the feature ids (fid) written to the GeoPackage, unique per layer.

Lane-connector direction follows nuPlan: a connector runs from ``exit_lane_fid`` (the lane the
vehicle exits) to ``entry_lane_fid`` (the lane it enters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Polygon

TURN_KINDS = ("left", "straight", "right")


@dataclass
class Lane:
    """A lane of a road segment (one lane group / roadblock holds the parallel lanes).

    centerline, left_boundary, right_boundary: (N, 2) float64, same N, in the driving direction.
    lane_index: 0 for the leftmost lane of its group, increasing to the right.
    left_lane_fid / right_lane_fid: the adjacent same-direction lane of the group, or None.
    """

    fid: int
    lane_group_fid: int
    lane_index: int
    centerline: np.ndarray
    left_boundary: np.ndarray
    right_boundary: np.ndarray
    left_boundary_fid: int
    right_boundary_fid: int
    speed_limit_mps: float
    width_m: float
    left_lane_fid: int | None = None
    right_lane_fid: int | None = None

    @property
    def polygon(self) -> Polygon:
        return Polygon(np.vstack([self.left_boundary, self.right_boundary[::-1]]))


@dataclass
class LaneConnector:
    """A path through an intersection from the end of one lane to the start of another.

    turn: one of TURN_KINDS. signal_phase: index into the intersection's phase cycle during which
    this connector has green (None for an unsignalised connector). stop_line_fid: the stop polygon
    at the connector's start, or None.
    """

    fid: int
    exit_lane_fid: int
    entry_lane_fid: int
    lane_group_connector_fid: int
    intersection_fid: int
    turn: str
    centerline: np.ndarray
    left_boundary: np.ndarray
    right_boundary: np.ndarray
    left_boundary_fid: int
    right_boundary_fid: int
    speed_limit_mps: float
    signal_phase: int | None
    stop_line_fid: int | None

    @property
    def polygon(self) -> Polygon:
        return Polygon(np.vstack([self.left_boundary, self.right_boundary[::-1]]))


@dataclass
class LaneGroup:
    """A roadblock: the parallel same-direction lanes of one road segment, left to right."""

    fid: int
    lane_fids: list[int]
    polygon: Polygon
    road_segment_fid: int


@dataclass
class LaneGroupConnector:
    """A roadblock connector: all lane connectors between two lane groups inside one intersection."""

    fid: int
    from_lane_group_fid: int
    to_lane_group_fid: int
    intersection_fid: int
    connector_fids: list[int]
    polygon: Polygon


@dataclass
class SignalPlan:
    """Fixed-time signal cycle of an intersection, in seconds.

    Phase k is green from ``offset_s + k * (green_s + yellow_s + all_red_s)`` for ``green_s``,
    then yellow for ``yellow_s``, then all-red for ``all_red_s``; the cycle has ``num_phases`` phases.
    """

    num_phases: int
    green_s: float
    yellow_s: float
    all_red_s: float
    offset_s: float

    @property
    def cycle_s(self) -> float:
        return self.num_phases * (self.green_s + self.yellow_s + self.all_red_s)

    def status(self, phase: int, t_s: float | np.ndarray) -> np.ndarray:
        """Light status of ``phase`` at time(s) ``t_s``: array of 'green' / 'yellow' / 'red'."""
        slot = self.green_s + self.yellow_s + self.all_red_s
        local = np.mod(
            np.asarray(t_s, dtype=np.float64) - self.offset_s - phase * slot, self.cycle_s
        )
        return np.where(
            local < self.green_s,
            "green",
            np.where(local < self.green_s + self.yellow_s, "yellow", "red"),
        )


@dataclass
class Intersection:
    """A junction area; signalised when ``signal`` is set."""

    fid: int
    polygon: Polygon
    signal: SignalPlan | None


@dataclass
class Crosswalk:
    """A pedestrian crossing. ``walk_path`` (2, 2): the two kerb points a pedestrian walks between."""

    fid: int
    polygon: Polygon
    walk_path: np.ndarray
    intersection_fid: int | None


@dataclass
class StopPolygon:
    """A stop line area in front of a connector; ``kind`` is 'traffic_light', 'stop_sign' or 'crosswalk'."""

    fid: int
    polygon: Polygon
    kind: str
    connector_fids: list[int]


@dataclass
class RoadNetwork:
    """Everything the synthetic map of one location holds.

    boundaries: fid -> (N, 2) polyline; lanes and connectors reference them by fid.
    carpark_areas, walkways, generic_drivable_areas, road_segments: fid -> Polygon.
    """

    location: str
    lanes: dict[int, Lane] = field(default_factory=dict)
    connectors: dict[int, LaneConnector] = field(default_factory=dict)
    lane_groups: dict[int, LaneGroup] = field(default_factory=dict)
    lane_group_connectors: dict[int, LaneGroupConnector] = field(default_factory=dict)
    intersections: dict[int, Intersection] = field(default_factory=dict)
    crosswalks: dict[int, Crosswalk] = field(default_factory=dict)
    stop_polygons: dict[int, StopPolygon] = field(default_factory=dict)
    boundaries: dict[int, np.ndarray] = field(default_factory=dict)
    carpark_areas: dict[int, Polygon] = field(default_factory=dict)
    walkways: dict[int, Polygon] = field(default_factory=dict)
    generic_drivable_areas: dict[int, Polygon] = field(default_factory=dict)
    road_segments: dict[int, Polygon] = field(default_factory=dict)

    def outgoing(self, lane_fid: int) -> list[LaneConnector]:
        """Connectors leaving ``lane_fid`` (their ``exit_lane_fid`` is the lane)."""
        return [c for c in self.connectors.values() if c.exit_lane_fid == lane_fid]

    def incoming(self, lane_fid: int) -> list[LaneConnector]:
        """Connectors arriving at ``lane_fid`` (their ``entry_lane_fid`` is the lane)."""
        return [c for c in self.connectors.values() if c.entry_lane_fid == lane_fid]

    def signal_status(self, connector_fid: int, t_s: float | np.ndarray) -> np.ndarray:
        """'green' / 'yellow' / 'red' for a signalised connector at time(s) t_s (s since log start)."""
        conn = self.connectors[connector_fid]
        signal = self.intersections[conn.intersection_fid].signal
        if signal is None or conn.signal_phase is None:
            return np.full(np.shape(t_s), "green")
        return signal.status(conn.signal_phase, t_s)
