"""Traffic simulation over a synthetic :class:`RoadNetwork` at the nuPlan clock (20 Hz).

This module holds the loop (``simulate``, :class:`TrafficSimulation`: set-up, population, the step,
the safety pass) and what it records (:class:`SimResult`). The parts: ``elements`` (lanes and
connectors as polylines), ``traffic_agents`` (kinds, sizes, agent state), ``vehicle_behaviour``
(IDM, stops, plans, lane changes), ``pedestrians`` (crossing at crosswalks).

Vehicles (the ego among them) and cyclists move along lane/connector polylines with the
Intelligent Driver Model: they follow leaders across element boundaries, slow down for lower speed
limits ahead, stop at red lights, wait for crossing connectors to clear and for pedestrians on
crosswalks, and change lanes with a gap check. Pedestrians cross at crosswalks when no vehicle is
close. Parked vehicles stand in carparks, with a cone or object in some empty bays; other static
objects (cones, barriers, signs) stand on sidewalks, off the lanes. A final safety pass keeps every pair of boxes apart: a move that would overlap another box
is not taken.

Frames: global UTM metres, headings in radians (counter-clockwise from +x). Positions are box
centres; the ego's nuPlan pose is its rear axle, ``EGO_REAR_AXLE_TO_CENTER_M`` behind the centre.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

from pluto_dvc.nuplan.vehicle import (
    EGO_HEIGHT_M,
    EGO_LENGTH_M,
    EGO_REAR_AXLE_TO_CENTER_M,
    EGO_WIDTH_M,
)
from pluto_dvc.synthetic.boxes import overlapping_pairs
from pluto_dvc.synthetic.elements import Element, build_elements
from pluto_dvc.synthetic.network import RoadNetwork
from pluto_dvc.synthetic.pedestrians import PED_SPEED, PedestrianBehaviour
from pluto_dvc.synthetic.traffic_agents import (
    BARRIER,
    BICYCLE,
    CONE,
    DT,
    GENERIC,
    PARKED,
    SAFETY_MARGIN_M,
    SIGN,
    STATIC_SIZES,
    VEHICLE,
    Mover,
    SimConfig,
    Static,
    Walker,
    box_polygon,
)
from pluto_dvc.synthetic.vehicle_behaviour import EMERGENCY_DECEL, VehicleBehaviour

VIEW_RADIUS_M = 150.0  # agents are kept alive within this distance of the ego
DETECTION_RANGE_M = 100.0  # boxes are logged within this square around the ego


@dataclass
class SimResult:
    """One simulated log, frame by frame (N frames at 0.05 s).

    ego: (N, 8) float64 columns x, y (rear axle, global m), heading (rad), vx, vy (vehicle frame,
    m/s), ax, ay (vehicle frame, m/s^2), yaw_rate (rad/s).
    boxes: flattened over frames, frame-sorted; ``box_frame`` (B,) int32, ``box_track`` (B,)
    int32 and ``box_state`` (B, 8) float64 columns x, y (box centre, global m), heading, width,
    length, height, vx, vy (global m/s). ``box_state`` is the true state; detection noise is added
    when the log tables are written.
    tracks: per track id, ``track_kind`` (K,) int8 (module kinds) and ``track_size`` (K, 3) w, l, h.
    ego_element (N,) int64: the lane/connector the ego drives on; ego_route: the element fids the
    ego plans to traverse from each frame on are ``route_elements[route_start[i]:]``.
    lights: per frame the (connector fid, status) rows of signalised connectors near the ego.
    """

    ego: np.ndarray
    ego_element: np.ndarray
    ego_lane_change: np.ndarray  # (N,) int8: 0 none, 1 to the left, -1 to the right
    ego_wait_crosswalk: np.ndarray  # (N,) bool
    ego_wait_light: np.ndarray  # (N,) bool
    ego_leader: np.ndarray  # (N,) int32 track of the leader within LOOKAHEAD_M, -1 none
    ego_leader_gap: np.ndarray  # (N,) float64 m, inf without a leader
    route_elements: np.ndarray
    route_start: np.ndarray
    box_frame: np.ndarray
    box_track: np.ndarray
    box_state: np.ndarray
    box_element: np.ndarray  # (B,) int64 lane/connector of a moving box, -1 for the others
    track_kind: np.ndarray
    track_size: np.ndarray
    light_frame: np.ndarray
    light_connector: np.ndarray
    light_status: np.ndarray  # 'green' / 'yellow' / 'red'
    safety_stops: int = 0  # moves the safety pass undid (0 in healthy traffic)

    @property
    def num_frames(self) -> int:
        return len(self.ego)

    def validate(self) -> None:
        n = self.num_frames
        assert self.ego.shape == (n, 8)
        for name in ("ego_element", "ego_lane_change", "ego_wait_crosswalk", "ego_leader"):
            assert len(getattr(self, name)) == n, name
        assert self.box_state.shape == (len(self.box_frame), 8)
        assert np.all(np.diff(self.box_frame) >= 0)
        assert len(self.track_kind) == len(self.track_size)


class TrafficSimulation(VehicleBehaviour, PedestrianBehaviour):
    """Deterministic traffic around an ego over one road network (see the module docstring)."""

    def __init__(self, network: RoadNetwork, elements: dict[int, Element], config: SimConfig):
        self.net = network
        self.el = elements
        self.cfg = config
        self.rng = np.random.default_rng(config.seed)
        self.t = 0.0
        self.movers: list[Mover] = []
        self.walkers: list[Walker] = []
        self.statics: list[Static] = []
        self.track_kind: list[int] = []
        self.track_size: list[tuple[float, float, float]] = []
        self.lanes = [f for f, e in elements.items() if not e.is_connector]
        self.lane_start = np.array([elements[f].points[0] for f in self.lanes])
        self.cw_fids = sorted(network.crosswalks)
        self.cw_center = np.array(
            [network.crosswalks[f].polygon.centroid.coords[0] for f in self.cw_fids]
        )
        self.cw_busy: dict[int, int] = {}  # crosswalk -> walkers on it
        self.signalised = sorted(
            f for f, c in network.connectors.items() if c.signal_phase is not None
        )
        self.sig_start = np.array([elements[f].points[0] for f in self.signalised])
        self.route: list[int] = []
        self.safety_stops = 0  # moves undone by the safety pass (a health figure: ideally 0)
        self.ego_leader: tuple[int, float] = (-1, np.inf)  # (track, gap m) seen by the ego's IDM
        self.walk_area = shapely.union_all(
            [cw.polygon for cw in network.crosswalks.values()] or [shapely.Point(0, 0)]
        )
        self.road = shapely.union_all(
            [
                *(ln.polygon for ln in network.lanes.values()),
                *(c.polygon for c in network.connectors.values()),
            ]
        )

    # ---------------------------------------------------------------- setup
    def _new_track(self, kind: int, size: tuple[float, float, float]) -> int:
        self.track_kind.append(kind)
        self.track_size.append(size)
        return len(self.track_kind) - 1

    def _vehicle_size(self, kind: int) -> tuple[float, float, float]:
        if kind == BICYCLE:
            return 0.7, 1.8, 1.7
        u = self.rng.random()
        if u < 0.06:  # bus / truck
            return 2.6, float(self.rng.uniform(10.0, 12.0)), 3.3
        if u < 0.25:  # SUV / van
            return 2.1, float(self.rng.uniform(5.0, 5.6)), 1.9
        return float(self.rng.uniform(1.8, 2.0)), float(self.rng.uniform(4.3, 4.9)), 1.55

    def setup(self) -> None:
        ego_lane = self._pick_ego_start()
        self.route = self._plan_route(ego_lane)
        ego = Mover(
            track=-1,
            kind=VEHICLE,
            length=EGO_LENGTH_M,
            width=EGO_WIDTH_M,
            height=EGO_HEIGHT_M,
            element=ego_lane,
            s=min(10.0, self.el[ego_lane].length / 3),
            v=0.0,
            desire=0.9,
            plan=deque(self.route[1:]),
            is_ego=True,
        )
        self._place(ego)
        self.ego = ego
        self.movers.append(ego)
        self._add_statics()
        for _ in range(self.cfg.num_vehicles * 3):
            if self._count(VEHICLE) >= self.cfg.num_vehicles:
                break
            self._spawn_mover(VEHICLE, near=True)
        for _ in range(self.cfg.num_cyclists * 3):
            if self._count(BICYCLE) >= self.cfg.num_cyclists:
                break
            self._spawn_mover(BICYCLE, near=True)

    def _pick_ego_start(self) -> int:
        lanes = [f for f in self.lanes if self.el[f].length > 40.0]
        return int(lanes[self.rng.integers(len(lanes))])

    def _count(self, kind: int) -> int:
        return sum(1 for m in self.movers if m.kind == kind and not m.is_ego)

    def _place(self, m: Mover) -> None:
        m.x, m.y, m.heading = self.el[m.element].pose(m.s, m.offset)

    def _spawn_mover(self, kind: int, near: bool) -> None:
        """A vehicle or cyclist on a random lane within (near) or at the edge of the view."""
        d = np.hypot(*(self.lane_start - [self.ego.x, self.ego.y]).T)
        lo, hi = (10.0, 120.0) if near else (90.0, 140.0)
        cands = [self.lanes[i] for i in np.flatnonzero((d > lo) & (d < hi))]
        if kind == BICYCLE:
            cands = [f for f in cands if self.el[f].lane_index == len(self.el[f].group_lanes) - 1]
        if not cands:
            return
        lane = int(cands[self.rng.integers(len(cands))])
        el = self.el[lane]
        w, length, h = self._vehicle_size(kind)
        v0 = self._desired_speed(kind, el.speed_limit, 1.0)
        room = el.length - length - (0.6 * v0) ** 2 / (2 * 2.0) - 10.0  # can stop before the end
        if room <= length:
            return
        s = float(self.rng.uniform(length, room))
        for other in self.movers:  # keep a clear gap on the same element
            if other.element == lane and abs(other.s - s) < 12.0 + length:
                return
        desire = float(self.rng.uniform(0.8, 1.0)) if kind == VEHICLE else 0.0
        v0 = self._desired_speed(kind, el.speed_limit, desire)
        m = Mover(
            track=-1,
            kind=kind,
            length=length,
            width=w,
            height=h,
            element=lane,
            s=s,
            v=0.6 * v0,
            desire=desire,
            plan=self._random_plan(lane),
        )
        self._place(m)
        if self._overlaps_any(self._box(m), exclude=None, margin=1.5):
            return
        m.track = self._new_track(kind, (w, length, h))
        self.movers.append(m)

    def _add_statics(self) -> None:
        """Parked vehicles in carparks, cones / barriers / signs / objects beside the roads.

        Some empty carpark bays hold a cone or a generic object: carparks belong to the drivable
        area, so these are the static objects PLUTO's feature keeps (nothing is put on a lane).
        """
        for poly in self.net.carpark_areas.values():
            rect = poly.minimum_rotated_rectangle
            xy = np.asarray(rect.exterior.coords)[:4]
            e1, e2 = xy[1] - xy[0], xy[3] - xy[0]
            if np.linalg.norm(e1) < np.linalg.norm(e2):
                e1, e2 = e2, e1
            along, across = np.linalg.norm(e1), np.linalg.norm(e2)
            u, n = e1 / along, e2 / across
            heading = float(np.arctan2(n[1], n[0]))
            for row in (0.25, 0.75):
                for k in np.arange(1.6, along - 1.6, 2.9):
                    p = xy[0] + u * k + n * (row * across)
                    empty_bay = self.rng.random() < 0.3
                    if not poly.contains(shapely.Point(p)):
                        continue
                    if not empty_bay:
                        size = (1.9, float(self.rng.uniform(4.3, 4.9)), 1.6)
                        self._add_static(PARKED, p, heading, size)
                    elif self.rng.random() < 0.5:  # a cone or object closing the bay
                        kind = (CONE, GENERIC)[int(self.rng.integers(2))]
                        self._add_static(kind, p, heading, STATIC_SIZES[kind])
        walkways = list(self.net.walkways.values())
        kinds = (CONE, CONE, BARRIER, SIGN, GENERIC)
        sizes = STATIC_SIZES
        for _ in range(min(60, 2 * len(walkways))):
            if not walkways:
                break
            poly = walkways[int(self.rng.integers(len(walkways)))]
            minx, miny, maxx, maxy = poly.bounds
            for _try in range(10):
                p = np.array([self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)])
                if poly.contains(shapely.Point(p)):
                    kind = kinds[int(self.rng.integers(len(kinds)))]
                    box = box_polygon(p[0], p[1], 0.0, *sizes[kind][1::-1])
                    clear = box.distance(self.road) > 1.0 and box.distance(self.walk_area) > 3.5
                    if clear and not self._overlaps_any(box, exclude=None, margin=0.3):
                        self._add_static(
                            kind, p, float(self.rng.uniform(-np.pi, np.pi)), sizes[kind]
                        )
                    break

    def _add_static(self, kind, p, heading, size) -> None:
        track = self._new_track(kind, size)
        w, length, h = size
        self.statics.append(Static(track, kind, float(p[0]), float(p[1]), heading, length, w, h))

    # ---------------------------------------------------------------- geometry helpers
    def _box(self, a, margin: float = 0.0) -> Polygon:
        return box_polygon(a.x, a.y, a.heading, a.length + 2 * margin, a.width + 2 * margin)

    def _overlaps_any(self, box: Polygon, exclude, margin: float) -> bool:
        grown = box.buffer(margin, join_style=2) if margin else box
        for a in [*self.movers, *self.walkers, *self.statics]:
            if a is exclude:
                continue
            if abs(a.x - box.centroid.x) > 15 or abs(a.y - box.centroid.y) > 15:
                continue
            if grown.intersects(self._box(a)):
                return True
        return False

    # ---------------------------------------------------------------- step
    def step(self) -> None:
        """Advance every agent by DT."""
        lights: dict[int, str] = {}  # signal status per connector, computed once per step
        occupancy = self._occupancy()
        busy_conn = {m.element for m in self.movers if self.el[m.element].is_connector}
        prev = [
            (m.element, m.s, m.v, m.offset, m.change_t, m.x, m.y, m.heading) for m in self.movers
        ]
        for m in self.movers:
            a = self._idm(m, occupancy, lights, busy_conn)
            m.accel = a
            m.v = max(0.0, m.v + a * DT)
            self._advance(m, m.v * DT)
        self._step_walkers()
        self._safety(prev)
        self._maybe_change_lanes(occupancy)
        self._respawn()
        self.t += DT

    # ---------------------------------------------------------------- safety and population
    def _safety(self, prev) -> None:
        """Undo the move of any mover whose box would come within SAFETY_MARGIN_M of another."""
        for _ in range(6):
            items = [*self.movers, *self.walkers, *self.statics]
            arr = np.array([[a.x, a.y, a.heading, a.length, a.width] for a in items])
            pairs = overlapping_pairs(arr, SAFETY_MARGIN_M)
            n_mov = len(self.movers)
            bad = {int(k) for k in pairs.ravel() if k < n_mov}
            if not bad:
                return
            for i in bad:
                m = self.movers[i]
                m.element, m.s, v, m.offset, m.change_t, m.x, m.y, m.heading = prev[i]
                m.v = max(0.0, v - EMERGENCY_DECEL * DT)
                m.accel = (m.v - v) / DT
                self.safety_stops += 1

    def _respawn(self) -> None:
        ex, ey = self.ego.x, self.ego.y
        keep = []
        for m in self.movers:
            far = np.hypot(m.x - ex, m.y - ey) > VIEW_RADIUS_M + 30
            if m.is_ego or not far:
                keep.append(m)
        self.movers = keep
        self.walkers = [w for w in self.walkers if np.hypot(w.x - ex, w.y - ey) < VIEW_RADIUS_M]
        self.cw_busy = {}
        for w in self.walkers:
            if w.crossing:
                self.cw_busy[w.crosswalk] = self.cw_busy.get(w.crosswalk, 0) + 1
        if int(round(self.t / DT)) % 10 == 0:
            if self._count(VEHICLE) < self.cfg.num_vehicles:
                self._spawn_mover(VEHICLE, near=False)
            if self._count(BICYCLE) < self.cfg.num_cyclists:
                self._spawn_mover(BICYCLE, near=False)
            if len(self.walkers) < self.cfg.num_pedestrians:
                self._spawn_walker()


def simulate(network: RoadNetwork, config: SimConfig, elements=None) -> SimResult:
    """Run one log of ``config.duration_s`` seconds and record it frame by frame."""
    elements = elements if elements is not None else build_elements(network)
    sim = TrafficSimulation(network, elements, config)
    sim.setup()
    n = int(round(config.duration_s / DT))
    ego = np.zeros((n, 8))
    ego_el = np.zeros(n, np.int64)
    lane_change = np.zeros(n, np.int8)
    wait_cw = np.zeros(n, bool)
    wait_light = np.zeros(n, bool)
    leader = np.full(n, -1, np.int32)
    leader_gap = np.full(n, np.inf)
    route_start = np.zeros(n, np.int64)
    frames, tracks, states, box_el = [], [], [], []
    light_frame, light_conn, light_status = [], [], []
    prev_v, prev_h = 0.0, None
    for i in range(n):
        if i > 0:
            sim.step()
        else:
            sim._idm(sim.ego, sim._occupancy(), {}, set())
        e = sim.ego
        h = e.heading
        yaw_rate = 0.0 if prev_h is None else _wrap(h - prev_h) / DT
        ego[i] = [
            e.x - EGO_REAR_AXLE_TO_CENTER_M * np.cos(h),
            e.y - EGO_REAR_AXLE_TO_CENTER_M * np.sin(h),
            h,
            e.v,
            0.0,
            (e.v - prev_v) / DT if i else 0.0,
            e.v * yaw_rate,
            yaw_rate,
        ]
        prev_v, prev_h = e.v, h
        ego_el[i] = e.element
        lane_change[i] = 0 if e.change_t < 0 else (1 if e.offset0 < 0 else -1)
        wait_cw[i] = e.wait_cross >= 0 and e.v < 1.0
        wait_light[i] = e.wait_light
        leader[i], leader_gap[i] = sim.ego_leader
        route_start[i] = sim.route_pos
        for a in [*sim.movers, *sim.walkers, *sim.statics]:
            if a is e or abs(a.x - e.x) > DETECTION_RANGE_M or abs(a.y - e.y) > DETECTION_RANGE_M:
                continue
            v = getattr(a, "v", PED_SPEED if getattr(a, "crossing", False) else 0.0)
            frames.append(i)
            tracks.append(a.track)
            box_el.append(getattr(a, "element", -1))
            states.append(
                (
                    a.x,
                    a.y,
                    a.heading,
                    a.width,
                    a.length,
                    a.height,
                    v * np.cos(a.heading),
                    v * np.sin(a.heading),
                )
            )
        near = np.flatnonzero(np.hypot(*(sim.sig_start - [e.x, e.y]).T) < 100.0)
        for k in near:
            conn = sim.signalised[int(k)]
            light_frame.append(i)
            light_conn.append(conn)
            light_status.append(str(network.signal_status(conn, sim.t)))
    result = SimResult(
        ego=ego,
        ego_element=ego_el,
        ego_lane_change=lane_change,
        ego_wait_crosswalk=wait_cw,
        ego_wait_light=wait_light,
        ego_leader=leader,
        ego_leader_gap=leader_gap,
        route_elements=np.asarray(sim.route, np.int64),
        route_start=route_start,
        box_frame=np.asarray(frames, np.int32),
        box_track=np.asarray(tracks, np.int32),
        box_state=np.asarray(states, np.float64).reshape(-1, 8),
        box_element=np.asarray(box_el, np.int64),
        track_kind=np.asarray(sim.track_kind, np.int8),
        track_size=np.asarray(sim.track_size, np.float64).reshape(-1, 3),
        light_frame=np.asarray(light_frame, np.int32),
        light_connector=np.asarray(light_conn, np.int64),
        light_status=np.asarray(light_status, dtype="<U6"),
    )
    result.safety_stops = sim.safety_stops
    result.validate()
    return result


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)
