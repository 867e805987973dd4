"""The agents of the traffic simulation: kinds, sizes and the state of each agent.

Movers (vehicles, cyclists, the ego) drive along road elements; walkers cross at crosswalks;
statics stand still. Positions are box centres in global UTM metres, headings radians.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon

from pluto_dvc.nuplan.log_schema import LOG_FRAME_S

DT = LOG_FRAME_S  # s, one simulation step per lidar_pc frame
SAFETY_MARGIN_M = 0.25  # boxes are inflated by this much in the overlap check

# agent kinds (the nuPlan category is derived from these)
VEHICLE, BICYCLE, PEDESTRIAN, PARKED, CONE, BARRIER, SIGN, GENERIC = range(8)
STATIC_SIZES = {  # (width, length, height) m
    CONE: (0.4, 0.4, 0.7),
    BARRIER: (0.5, 2.0, 1.0),
    SIGN: (0.6, 0.3, 1.5),
    GENERIC: (0.8, 0.8, 0.9),
}
KIND_CATEGORY = {
    VEHICLE: "vehicle",
    BICYCLE: "bicycle",
    PEDESTRIAN: "pedestrian",
    PARKED: "vehicle",
    CONE: "traffic_cone",
    BARRIER: "barrier",
    SIGN: "czone_sign",
    GENERIC: "generic_object",
}


@dataclass
class Mover:
    """A vehicle or cyclist driving along elements. s: arc length on ``element``; ``offset``
    lateral displacement (m, left positive) that decays to 0 during a lane change."""

    track: int
    kind: int
    length: float
    width: float
    height: float
    element: int
    s: float
    v: float
    desire: float  # share of the speed limit the driver aims for
    plan: deque[int]
    offset: float = 0.0
    offset0: float = 0.0
    change_t: float = -1.0  # time since the lane change started, -1 when none
    change_from: int = -1
    is_ego: bool = False
    accel: float = 0.0
    x: float = 0.0
    y: float = 0.0
    heading: float = 0.0
    wait_cross: int = -1  # crosswalk the mover is waiting for (tagging)
    wait_light: bool = False


@dataclass
class Walker:
    """A pedestrian crossing crosswalk ``crosswalk`` from ``start`` to ``end`` (global, m)."""

    track: int
    crosswalk: int
    start: np.ndarray
    end: np.ndarray
    t_wait: float  # seconds left to wait at the kerb before trying to cross
    progress: float = 0.0  # metres walked along the crossing
    crossing: bool = False
    done_t: float = 0.0  # seconds spent at the far kerb
    x: float = 0.0
    y: float = 0.0
    heading: float = 0.0
    length: float = 0.6
    width: float = 0.7
    height: float = 1.75


@dataclass
class Static:
    track: int
    kind: int
    x: float
    y: float
    heading: float
    length: float
    width: float
    height: float


@dataclass
class SimConfig:
    """Size and density of one simulated log."""

    duration_s: float
    num_vehicles: int
    num_pedestrians: int
    num_cyclists: int
    seed: int


def box_polygon(x: float, y: float, heading: float, length: float, width: float) -> Polygon:
    c, s = np.cos(heading), np.sin(heading)
    hl, hw = length / 2, width / 2
    corners = [(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]
    return Polygon([(x + c * a - s * b, y + s * a + c * b) for a, b in corners])
