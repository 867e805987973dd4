"""Traffic simulation over a synthetic :class:`RoadNetwork` at the nuPlan clock (20 Hz).

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
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from pluto_dvc.synthetic.boxes import boxes_overlap, overlapping_pairs
from pluto_dvc.synthetic.network import RoadNetwork

DT = 0.05  # s, the lidar_pc clock
EGO_LENGTH_M, EGO_WIDTH_M, EGO_HEIGHT_M = 5.176, 2.297, 1.777  # nuPlan's Pacifica
EGO_REAR_AXLE_TO_CENTER_M = 1.461
IDM_ACCEL, IDM_DECEL, IDM_HEADWAY_S, IDM_MIN_GAP_M = 1.4, 2.0, 1.3, 2.5
MAX_DECEL, EMERGENCY_DECEL = 4.0, 7.5  # m/s^2
LANE_CHANGE_M = 35.0  # travel over which a lane change completes
PED_SPEED = 1.3  # m/s
KERB_SETBACK_M = 1.5  # pedestrians wait this far behind the kerb
SAFETY_MARGIN_M = 0.25  # boxes are inflated by this much in the overlap check
VIEW_RADIUS_M = 150.0  # agents are kept alive within this distance of the ego
LOOKAHEAD_M = 80.0
DETECTION_RANGE_M = 100.0  # boxes are logged within this square around the ego

# agent kinds (the nuPlan category is derived from these)
VEHICLE, BICYCLE, PEDESTRIAN, PARKED, CONE, BARRIER, SIGN, GENERIC = range(8)
_STATIC_SIZES = {  # (width, length, height) m
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


# --------------------------------------------------------------------------------------------
# road elements: lanes and connectors as polylines with arc length, plus what lies along them
# --------------------------------------------------------------------------------------------


@dataclass
class Element:
    """A lane or connector. points (P, 2), cum (P,) arc length from the start (m)."""

    fid: int
    is_connector: bool
    roadblock: int
    points: np.ndarray
    cum: np.ndarray
    speed_limit: float
    successors: list[int]
    group_lanes: list[int] = field(default_factory=list)  # lanes of the roadblock, left to right
    lane_index: int = 0
    turn: str = ""
    stop_lines: list[int] = field(default_factory=list)  # signalised: connectors gated here
    crossings: list[tuple[int, float, float]] = field(
        default_factory=list
    )  # crosswalk, s_in, s_out
    conflicts: set[int] = field(default_factory=set)  # connectors crossing this one
    siblings: list[int] = field(default_factory=list)  # connectors leaving the same lane

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def pose(self, s: float, offset: float = 0.0) -> tuple[float, float, float]:
        """Position and heading at arc length s, shifted ``offset`` m to the left."""
        s = min(max(s, 0.0), self.length)
        i = int(np.searchsorted(self.cum, s, side="right")) - 1
        i = min(max(i, 0), len(self.cum) - 2)
        seg = self.cum[i + 1] - self.cum[i]
        t = 0.0 if seg <= 0 else (s - self.cum[i]) / seg
        p = self.points[i] + t * (self.points[i + 1] - self.points[i])
        d = self.points[i + 1] - self.points[i]
        heading = float(np.arctan2(d[1], d[0]))
        if offset:
            p = p + offset * np.array([-np.sin(heading), np.cos(heading)])
        return float(p[0]), float(p[1]), heading


def _arc(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])


def build_elements(network: RoadNetwork) -> dict[int, Element]:
    """Lanes and connectors of the network as :class:`Element`, with successors and conflicts."""
    elements: dict[int, Element] = {}
    outgoing: dict[int, list[int]] = {}
    for conn in network.connectors.values():
        outgoing.setdefault(conn.exit_lane_fid, []).append(conn.fid)
    for lane in network.lanes.values():
        group = network.lane_groups[lane.lane_group_fid]
        elements[lane.fid] = Element(
            fid=lane.fid,
            is_connector=False,
            roadblock=lane.lane_group_fid,
            points=lane.centerline,
            cum=_arc(lane.centerline),
            speed_limit=lane.speed_limit_mps,
            successors=sorted(outgoing.get(lane.fid, [])),
            group_lanes=list(group.lane_fids),
            lane_index=lane.lane_index,
        )
    for conn in network.connectors.values():
        elements[conn.fid] = Element(
            fid=conn.fid,
            is_connector=True,
            roadblock=conn.lane_group_connector_fid,
            points=conn.centerline,
            cum=_arc(conn.centerline),
            speed_limit=conn.speed_limit_mps,
            successors=[conn.entry_lane_fid],
            turn=conn.turn,
        )
    for _lane_fid, conns in outgoing.items():
        for c in conns:
            elements[c].siblings = [o for o in conns if o != c]
    _add_conflicts(network, elements)
    _add_crossings(network, elements)
    return elements


def _add_conflicts(network: RoadNetwork, elements: dict[int, Element]) -> None:
    """Connectors whose paths cross or merge (not those that share their exit lane)."""
    conns = list(network.connectors.values())
    lines = [LineString(c.centerline) for c in conns]
    tree = shapely.STRtree(lines)
    for i, conn in enumerate(conns):
        for j in tree.query(lines[i].buffer(1.2)):
            other = conns[int(j)]
            if other.fid == conn.fid or other.exit_lane_fid == conn.exit_lane_fid:
                continue
            if lines[i].distance(lines[int(j)]) < 2.4:
                elements[conn.fid].conflicts.add(other.fid)


def _add_crossings(network: RoadNetwork, elements: dict[int, Element]) -> None:
    """Arc-length intervals where each element passes over a crosswalk."""
    if not network.crosswalks:
        return
    fids = list(network.crosswalks)
    polys = [network.crosswalks[f].polygon.buffer(0.8) for f in fids]
    tree = shapely.STRtree(polys)
    for el in elements.values():
        line = LineString(el.points)
        for k in tree.query(line):
            inter = line.intersection(polys[int(k)])
            if inter.is_empty:
                continue
            ss = [line.project(shapely.Point(c)) for c in np.asarray(_coords(inter))]
            el.crossings.append((fids[int(k)], min(ss), max(ss)))
        el.crossings.sort(key=lambda c: c[1])


def _coords(geom) -> list:
    if hasattr(geom, "geoms"):
        return [c for g in geom.geoms for c in g.coords]
    return list(geom.coords)


# --------------------------------------------------------------------------------------------
# agents
# --------------------------------------------------------------------------------------------


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


class TrafficSimulation:
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

    def _plan_route(
        self, start_lane: int, min_length_m: float = 600.0, first_from_current: bool = False
    ) -> list[int]:
        """A long ego route: lanes and connectors, with lane changes where the turn needs one.

        At each lane end a connector is drawn (straight more likely); when it leaves from another
        lane of the same roadblock, the route holds that lane next (a lane change) before it.
        """
        route = [start_lane]
        length = self.el[start_lane].length
        lane = start_lane
        while length < min_length_m:
            el = self.el[lane]
            sources = [lane] if first_from_current and len(route) == 1 else el.group_lanes
            options = [(src, c) for src in sources for c in self.el[src].successors]
            if not options:
                break
            weights = np.array(
                [3.0 if self.el[c].turn == "straight" else 1.0 for _, c in options], dtype=float
            )
            # prefer not to change lanes twice in a row on short lanes
            weights[[o != lane for o, _ in options]] *= 0.6
            k = int(self.rng.choice(len(options), p=weights / weights.sum()))
            src, conn = options[k]
            if src != lane:
                route.append(src)
            route.append(conn)
            lane = self.el[conn].successors[0]
            route.append(lane)
            length += self.el[conn].length + self.el[lane].length
        return route

    def _random_plan(self, element: int, steps: int = 12) -> deque[int]:
        plan: deque[int] = deque()
        cur = element
        for _ in range(steps):
            succ = self.el[cur].successors
            if not succ:
                break
            if self.el[cur].is_connector:
                cur = succ[0]
            else:
                w = np.array([3.0 if self.el[c].turn == "straight" else 1.0 for c in succ])
                cur = int(succ[int(self.rng.choice(len(succ), p=w / w.sum()))])
            plan.append(cur)
        return plan

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

    def _desired_speed(self, kind: int, limit: float, desire: float) -> float:
        if kind == BICYCLE:
            return min(limit, 5.0)
        return limit * desire

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
                        self._add_static(kind, p, heading, _STATIC_SIZES[kind])
        walkways = list(self.net.walkways.values())
        kinds = (CONE, CONE, BARRIER, SIGN, GENERIC)
        sizes = _STATIC_SIZES
        for _ in range(min(60, 2 * len(walkways))):
            if not walkways:
                break
            poly = walkways[int(self.rng.integers(len(walkways)))]
            minx, miny, maxx, maxy = poly.bounds
            for _try in range(10):
                p = np.array([self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)])
                if poly.contains(shapely.Point(p)):
                    kind = kinds[int(self.rng.integers(len(kinds)))]
                    box = _box_polygon(p[0], p[1], 0.0, *sizes[kind][1::-1])
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
        return _box_polygon(a.x, a.y, a.heading, a.length + 2 * margin, a.width + 2 * margin)

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

    def _light(self, conn: int, cache: dict[int, str]) -> str:
        status = cache.get(conn)
        if status is None:
            status = str(self.net.signal_status(conn, self.t))
            cache[conn] = status
        return status

    def _occupancy(self) -> dict[int, list[Mover]]:
        occ: dict[int, list[Mover]] = {}
        for m in self.movers:
            occ.setdefault(m.element, []).append(m)
            if m.change_t >= 0 and m.change_from >= 0:
                occ.setdefault(m.change_from, []).append(m)
        return occ

    def _upcoming(self, m: Mover) -> list[int]:
        return [m.element, *list(m.plan)[:6]]

    def _idm(self, m: Mover, occ, lights, busy_conn) -> float:
        """IDM acceleration with leaders, speed limits ahead, lights, conflicts and crosswalks."""
        el = self.el[m.element]
        v0 = self._desired_speed(m.kind, el.speed_limit, m.desire)
        gap, lead_v = np.inf, 0.0
        leader = -1
        a_cap = np.inf
        m.wait_cross, m.wait_light = -1, False
        dist = -m.s  # distance from m to the start of each upcoming element
        for k, fid in enumerate(self._upcoming(m)):
            e = self.el[fid]
            if dist > LOOKAHEAD_M:
                break
            if k == 1 and fid in el.group_lanes:  # a planned lane change: alongside, not ahead
                dist = -self._projected_s(m, fid)
            # leaders on this element, and near the start of connectors that share its start
            others = list(occ.get(fid, ()))
            for sib in e.siblings:
                others.extend(o for o in occ.get(sib, ()) if o.element == sib and o.s < 20.0)
            for o in others:
                if o is m:
                    continue
                o_s = o.s if o.element in (fid, *e.siblings) else self._projected_s(o, fid)
                ahead = dist + o_s
                if ahead > 0 and (k > 0 or o_s > m.s):
                    g = ahead - (o.length + m.length) / 2
                    if g < gap:
                        gap, lead_v, leader = g, o.v, o.track
            if k > 0:
                # slow down for a lower limit ahead: v^2 = v_next^2 + 2 b d
                v_next = self._desired_speed(m.kind, e.speed_limit, m.desire or 1.0)
                v0 = min(v0, np.sqrt(v_next**2 + 2 * 1.2 * max(dist - m.length / 2, 0.0)))
                if m.v > v_next:  # reach the lower limit by the time the centre gets there
                    a_cap = min(a_cap, (v_next**2 - m.v**2) / (2 * max(dist - 0.5, 0.5)))
                if e.is_connector and self._must_stop(m, e, dist, lights, busy_conn):
                    g = dist - m.length / 2 - 0.5
                    if g < gap:
                        gap, lead_v, leader = g, 0.0, -1
                        m.wait_light = self._light(fid, lights) != "green"
            for cw, s_in, _s_out in e.crossings:
                if self.cw_busy.get(cw, 0) > 0:
                    front = dist + s_in - m.length / 2 - 1.5
                    if front > -0.5 and front < gap:  # not yet on it
                        gap, lead_v, leader = front, 0.0, -1
                        m.wait_cross = cw
            dist += e.length
        if m.is_ego:
            self.ego_leader = (leader, gap)
        v = m.v
        free = 1.0 - (v / max(v0, 0.1)) ** 4
        if not np.isfinite(gap):
            a = IDM_ACCEL * free
        else:
            s_star = (
                IDM_MIN_GAP_M
                + v * IDM_HEADWAY_S
                + v * (v - lead_v) / (2 * np.sqrt(IDM_ACCEL * IDM_DECEL))
            )
            a = IDM_ACCEL * (free - (max(s_star, 0.0) / max(gap, 0.1)) ** 2)
        if v > v0 + 0.2:
            a = min(a, -1.0)
        a = min(a, a_cap)
        return float(np.clip(a, -MAX_DECEL if gap > 2.0 else -EMERGENCY_DECEL, IDM_ACCEL))

    def _projected_s(self, o: Mover, fid: int) -> float:
        """A lane-changing mover seen on the lane it is leaving: the same fraction of length."""
        return o.s / max(self.el[o.element].length, 1e-6) * self.el[fid].length

    def _must_stop(self, m: Mover, conn: Element, dist: float, lights, busy_conn) -> bool:
        """Stop before connector ``conn`` (dist m ahead): red, catchable yellow, or a conflict."""
        if (
            conn.fid in self.net.connectors
            and self.net.connectors[conn.fid].signal_phase is not None
        ):
            status = self._light(conn.fid, lights)
            stop_dist = m.v**2 / (2 * 3.0)
            front = dist - m.length / 2
            if status == "red" and front > -0.5:
                return True
            if status == "yellow" and front > stop_dist:
                return True
        return bool(dist - m.length / 2 < 15.0 and conn.conflicts & busy_conn)

    def _advance(self, m: Mover, ds: float) -> None:
        m.s += ds
        while m.s > self.el[m.element].length:
            if not m.plan or m.plan[0] not in self.el[m.element].successors:
                self._replan(m)  # empty plan, or a lane change that did not happen in time
                if not m.plan:
                    m.s, m.v = self.el[m.element].length, 0.0
                    break
            m.s -= self.el[m.element].length
            m.element = m.plan.popleft()
            if len(m.plan) < 6:
                self._extend_plan(m)
        x, y, h = self._lane_change_pose(m, ds)
        m.x, m.y, m.heading = x, y, h

    def _lane_change_pose(self, m: Mover, ds: float) -> tuple[float, float, float]:
        """Pose with the lateral offset of a lane change, which runs over LANE_CHANGE_M metres
        of travel as a smoothstep (so the heading change stays small at any speed)."""
        if m.change_t < 0:
            return self.el[m.element].pose(m.s)
        m.change_t += ds  # metres travelled since the change started
        frac = min(m.change_t / LANE_CHANGE_M, 1.0)
        m.offset = m.offset0 * (1.0 - (3 * frac**2 - 2 * frac**3))
        x, y, h = self.el[m.element].pose(m.s, m.offset)
        slope = -m.offset0 * (6 * frac - 6 * frac**2) / LANE_CHANGE_M  # d offset / d s
        if frac >= 1.0:
            m.change_t, m.offset, m.change_from = -1.0, 0.0, -1
        return x, y, h + float(np.arctan(slope))

    def _replan(self, m: Mover) -> None:
        """A new plan leaving from the end of the current element (no lane change first)."""
        if m.is_ego:
            new = self._plan_route(m.element, first_from_current=True)
            self.route = self.route[: self.route_pos + 1] + new[1:]
            m.plan = deque(new[1:])
        else:
            m.plan = self._random_plan(m.element)

    def _extend_plan(self, m: Mover) -> None:
        tail = m.plan[-1] if m.plan else m.element
        if m.is_ego:
            more = self._plan_route(tail)[1:]
            self.route.extend(more)
            m.plan.extend(more)
        else:
            m.plan.extend(self._random_plan(tail, 6))

    @property
    def route_pos(self) -> int:
        """Index of the ego's current element in ``route``."""
        return len(self.route) - len(self.ego.plan) - 1

    # ---------------------------------------------------------------- lane changes
    def _maybe_change_lanes(self, occ) -> None:
        ego = self.ego
        if ego.change_t < 0 and ego.plan and not self.el[ego.element].is_connector:
            nxt = ego.plan[0]
            if nxt in self.el[ego.element].group_lanes and nxt != ego.element:
                left = self.el[nxt].length - self._projected_s(ego, nxt)
                if left < LANE_CHANGE_M + 10.0:
                    self._replan(ego)  # too late to change lanes: take a turn from this lane
                else:
                    self._try_change(ego, nxt, occ)
        for m in self.movers:
            if m.is_ego or m.kind != VEHICLE or m.change_t >= 0:
                continue
            el = self.el[m.element]
            if el.is_connector or len(el.group_lanes) < 2 or self.rng.random() > 0.002:
                continue
            i = el.group_lanes.index(m.element)
            j = i + (1 if self.rng.random() < 0.5 else -1)
            if 0 <= j < len(el.group_lanes):
                target = el.group_lanes[j]
                if self._try_change(m, target, occ):
                    m.plan = self._random_plan(target)

    def _try_change(self, m: Mover, target: int, occ) -> bool:
        """Start a lane change to the adjacent lane ``target`` when it has a safe gap."""
        src, dst = self.el[m.element], self.el[target]
        s_new = m.s / max(src.length, 1e-6) * dst.length
        if s_new < 5.0 or dst.length - s_new < LANE_CHANGE_M + 10.0:
            return False
        for o in occ.get(target, ()):
            o_s = o.s if o.element == target else self._projected_s(o, target)
            ahead = o_s - s_new
            if (
                -(o.length / 2 + m.length / 2 + 6.0 + o.v * 1.0)
                < ahead
                < (o.length / 2 + m.length / 2 + 6.0 + m.v * 1.2)
            ):
                return False
        # lateral offset of the old lane centre seen from the new lane
        x0, y0, h0 = dst.pose(s_new)
        off = -np.sin(h0) * (m.x - x0) + np.cos(h0) * (m.y - y0)
        if abs(off) > 6.0:
            return False
        m.change_from = m.element
        m.element, m.s = target, s_new
        if m.plan and m.plan[0] == target:
            m.plan.popleft()
        m.offset0 = m.offset = float(off)
        m.change_t = 0.0
        return True

    # ---------------------------------------------------------------- pedestrians
    def _step_walkers(self) -> None:
        for w in list(self.walkers):
            if not w.crossing and w.progress == 0.0:
                w.t_wait -= DT
                if w.t_wait <= 0 and self._crossing_is_safe(w.crosswalk):
                    w.crossing = True
                    self.cw_busy[w.crosswalk] = self.cw_busy.get(w.crosswalk, 0) + 1
            elif w.crossing:
                total = float(np.linalg.norm(w.end - w.start))
                step = min(total, w.progress + PED_SPEED * DT)
                if not self._walker_blocked(w, step, total):
                    w.progress = step
                if w.progress >= total:
                    w.crossing = False
                    self.cw_busy[w.crosswalk] -= 1
            else:
                w.done_t += DT
                if w.done_t > 4.0:
                    self.walkers.remove(w)
                    continue
            total = float(np.linalg.norm(w.end - w.start))
            p = w.start + (w.end - w.start) * (w.progress / max(total, 1e-6))
            w.x, w.y = float(p[0]), float(p[1])

    def _walker_blocked(self, w: Walker, progress: float, total: float) -> bool:
        """Would walking on to ``progress`` bring ``w`` within the safety margin of a walker?"""
        p = w.start + (w.end - w.start) * (progress / max(total, 1e-6))
        others = [
            o
            for o in [*self.walkers, *self.statics]
            if o is not w and abs(o.x - p[0]) + abs(o.y - p[1]) < 3
        ]
        if not others:
            return False
        mine = np.array([[p[0], p[1], w.heading, w.length, w.width]] * len(others))
        theirs = np.array([[o.x, o.y, o.heading, o.length, o.width] for o in others])
        return bool(boxes_overlap(mine, theirs, SAFETY_MARGIN_M).any())

    def _crossing_is_safe(self, cw: int) -> bool:
        """No vehicle on the crosswalk or unable to stop comfortably before it."""
        for m in self.movers:
            dist = -m.s
            for fid in self._upcoming(m)[:3]:
                e = self.el[fid]
                for c, s_in, s_out in e.crossings:
                    if c != cw:
                        continue
                    front = dist + s_in - m.length / 2
                    back = dist + s_out + m.length / 2
                    if front < 0 < back:
                        return False  # on it
                    if 0 <= front < m.v**2 / (2 * 2.0) + 6.0:
                        return False
                dist += e.length
                if dist > 60:
                    break
        return True

    def _spawn_walker(self) -> None:
        if not self.cw_fids:
            return
        d = np.hypot(*(self.cw_center - [self.ego.x, self.ego.y]).T)
        cands = [self.cw_fids[i] for i in np.flatnonzero(d < 110.0)]
        if not cands:
            return
        cw = int(cands[self.rng.integers(len(cands))])
        path = self.net.crosswalks[cw].walk_path
        a, b = (path[0], path[1]) if self.rng.random() < 0.5 else (path[1], path[0])
        # keep to the right of the walking direction: walkers crossing the other way pass them
        right = np.array([(b - a)[1], -(b - a)[0]]) / max(np.linalg.norm(b - a), 1e-6)
        shift = right * float(self.rng.uniform(0.4, 1.4))
        u = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        back = u * KERB_SETBACK_M  # wait and finish on the sidewalk, not at the kerb edge
        w = Walker(
            track=-1,
            crosswalk=cw,
            start=np.asarray(a, float) + shift - back,
            end=np.asarray(b, float) + shift + back,
            t_wait=float(self.rng.uniform(0.5, 6.0)),
            heading=float(np.arctan2(*(b - a)[::-1])),
        )
        w.x, w.y = float(w.start[0]), float(w.start[1])
        if self._overlaps_any(self._box(w), exclude=None, margin=0.4):
            return
        w.track = self._new_track(PEDESTRIAN, (w.width, w.length, w.height))
        self.walkers.append(w)

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

    def ego_route_roadblocks(self) -> list[int]:
        """Roadblock ids of the ego's route from its current element on (no repeats in a row)."""
        out: list[int] = []
        for fid in [self.ego.element, *self.ego.plan]:
            rb = self.el[fid].roadblock
            if not out or out[-1] != rb:
                out.append(rb)
        return out


def _box_polygon(x: float, y: float, heading: float, length: float, width: float) -> Polygon:
    c, s = np.cos(heading), np.sin(heading)
    hl, hw = length / 2, width / 2
    corners = [(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]
    return Polygon([(x + c * a - s * b, y + s * a + c * b) for a, b in corners])


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
