"""Generate a synthetic city district: a :class:`RoadNetwork` around a nuPlan location's UTM origin.

The district is a jittered grid of ``cols x rows`` signalised intersections joined by two-way
streets. The outer ring and most grid lines are arterials (``arterial_lanes`` per direction), some
inner lines are side streets; some street segments bend (a mid-block bump or S-bend, straight near
the junctions). Every direction of every segment is a lane group; at every intersection each
approach has left / straight / right connectors to each other arm (no U-turns), so every lane
continues. Each approach is one protected signal phase, so no two green movements ever conflict.

Along an arm, from the node outwards: the junction box (``Intersection.polygon``) up to
``d_box`` (widest kerb + 3 m), a crosswalk, a stop polygon over the first 1.5 m of the
connectors, then the lanes (6.5 m past the box edge). Sidewalks run 3 m wide along the outer
lanes and round each corner along the kerb-side connector (right boundary of the rightmost
lane's move into the next arm), so they never overlap lanes or connectors.

Right-hand traffic everywhere (Singapore's real roads are left-hand). Coordinates are global UTM
metres; polylines are dense (about 0.25 m). All fids come from one counter, so they are unique
across the whole network. Generation is deterministic for a (location, seed, size).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.synthetic.network import (
    Crosswalk,
    Intersection,
    Lane,
    LaneConnector,
    LaneGroup,
    LaneGroupConnector,
    RoadNetwork,
    SignalPlan,
    StopPolygon,
)
from pluto_dvc.synthetic.road_geometry import (
    BEND_PEAKS,
    POINT_SPACING_M,
    clean_polygon,
    connector_lines,
    cubic_bezier,
    largest_polygon,
    left_normal,
    line_intersection,
    raw_bend,
    rectangle,
    signed_angle,
    uniform_params,
    unit,
)

CORNER_MARGIN_M = 3.0  # junction box edge beyond the widest kerb of the node's roads
CROSSWALK_GAP_M = 0.5  # box edge -> crosswalk
CROSSWALK_WIDTH_M = 4.0
STOP_GAP_M = 0.5  # crosswalk -> stop polygon
STOP_DEPTH_M = 1.5  # stop polygon length along the connectors; its far edge is the lane end
SIDEWALK_WIDTH_M = 3.0
BEND_MARGIN_M = 5.0  # straight road kept after a lane start and before a lane end
MIN_BEND_RADIUS_M = 40.0
TURN_LATERAL_ACCEL_MPS2 = 2.0  # connector speed limit: sqrt(a * min radius)
MIN_CONNECTOR_SPEED_MPS = 3.0
STRAIGHT_MAX_DEG = 45.0  # heading change below which a movement is 'straight'
GREEN_S = (12.0, 20.0)
YELLOW_S = 3.0
ALL_RED_S = (1.0, 2.0)
CARPARK_DEPTH_M = 22.0
# junction box edge -> lane end: crosswalk and stop polygon lie between
BOX_TO_LANE_END_M = CROSSWALK_GAP_M + CROSSWALK_WIDTH_M + STOP_GAP_M + STOP_DEPTH_M


@dataclass(frozen=True)
class NetworkSize:
    """Shape of a generated district. Lengths in metres, speeds in m/s.

    cols, rows: intersections along x (east) and y (north); every node is a signalised junction.
    block_length_m: nominal node spacing; each node is moved by up to ``jitter_m`` in x and y.
    arterial_lanes / side_street_lanes: lanes per direction. The outer ring is arterial; each inner
        grid line is a side street with probability ``side_street_fraction``.
    arterial_speed_mps / side_street_speed_mps: (low, high) range of a street's speed limit.
    curved_fraction: share of segments with a mid-block bend of peak offset <= bend_amplitude_m.
    num_carparks: carpark areas placed beside straight segments, off the road.
    """

    cols: int = 6
    rows: int = 6
    block_length_m: float = 120.0
    jitter_m: float = 6.0
    arterial_lanes: int = 2
    side_street_lanes: int = 1
    side_street_fraction: float = 0.4
    lane_width_m: float = 3.5
    arterial_speed_mps: tuple[float, float] = (11.0, 17.0)
    side_street_speed_mps: tuple[float, float] = (8.0, 11.0)
    curved_fraction: float = 0.35
    bend_amplitude_m: float = 10.0
    num_carparks: int = 2

    def __post_init__(self) -> None:
        if self.cols < 2 or self.rows < 2:
            raise ValueError(f"NetworkSize needs cols, rows >= 2, got {self.cols}x{self.rows}")
        if not (1 <= self.side_street_lanes <= 4 and 1 <= self.arterial_lanes <= 4):
            raise ValueError("NetworkSize lanes per direction must be in 1..4")
        fractions = (self.side_street_fraction, self.curved_fraction)
        if not all(0.0 <= f <= 1.0 for f in fractions) or self.num_carparks < 0:
            raise ValueError("NetworkSize fractions must be in [0, 1] and num_carparks >= 0")
        if not 2.5 <= self.lane_width_m <= 5.0:
            raise ValueError(
                f"NetworkSize.lane_width_m must be in [2.5, 5], got {self.lane_width_m}"
            )
        if self.block_length_m < self.min_block_length_m:
            raise ValueError(
                f"NetworkSize.block_length_m={self.block_length_m} is too short for these roads: "
                f"use >= {self.min_block_length_m:.1f} m (or fewer lanes / less jitter)"
            )

    @property
    def min_block_length_m(self) -> float:
        """Shortest block that leaves >= 20 m of lane between two junctions at maximal jitter."""
        half_width = max(self.arterial_lanes, self.side_street_lanes) * self.lane_width_m
        return 2 * (half_width + CORNER_MARGIN_M + BOX_TO_LANE_END_M) + 20.0 + 2 * self.jitter_m


TINY = NetworkSize(cols=3, rows=3, block_length_m=90.0, curved_fraction=0.5, num_carparks=1)
NETWORK_SIZES: dict[str, NetworkSize] = {"default": NetworkSize(), "tiny": TINY}


def generate_road_network(location: str, seed: int, size: NetworkSize | None = None) -> RoadNetwork:
    """The district of ``location`` (a key of ``LOCATIONS``) for ``seed``; default size if None."""
    if location not in LOCATIONS:
        raise ValueError(f"unknown location {location!r}: expected one of {sorted(LOCATIONS)}")
    size = NETWORK_SIZES["default"] if size is None else size
    rng = np.random.default_rng([seed, zlib.crc32(location.encode())])
    return _Builder(location, rng, size).build()


@dataclass
class _Edge:
    """A street segment from node a to node b: the straight chord plus an optional bend.

    The median (the line between the two directions) at chord distance s is
    ``start + s * dir + amp * g((s - bend_s0) / (bend_s1 - bend_s0)) * normal`` (normal = left of
    a -> b); ``amp`` scales g to the peak lateral offset in metres.
    """

    a: int
    b: int
    start: np.ndarray
    dir: np.ndarray
    length: float
    lanes: int
    speed_mps: float
    bend: str = "none"
    amp: float = 0.0
    bend_s0: float = 0.0
    bend_s1: float = 1.0

    @property
    def normal(self) -> np.ndarray:
        return left_normal(self.dir)

    def frame(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Median points (N, 2) and unit left normals (N, 2) at chord distances s (N,)."""
        span = self.bend_s1 - self.bend_s0
        g, dg = raw_bend(self.bend, np.clip((s - self.bend_s0) / span, 0.0, 1.0))
        scale = self.amp / BEND_PEAKS[self.bend][0] if self.bend in BEND_PEAKS else 0.0
        points = self.start + s[:, None] * self.dir + (scale * g)[:, None] * self.normal
        tangent = self.dir + (scale * dg / span)[:, None] * self.normal
        return points, left_normal(unit(tangent))

    def offset_lines(self, s0: float, s1: float, offsets: np.ndarray, ref: float) -> np.ndarray:
        """Lines (K, N, 2) at lateral ``offsets`` (K,) (m, left of a -> b) from s0 to s1, sampled
        at the same chord distances, evenly spaced along the line at offset ``ref``."""
        s_dense = np.linspace(s0, s1, max(2, int((s1 - s0) / 0.1) + 2))
        points, normals = self.frame(s_dense)
        s = uniform_params(points + ref * normals, s_dense, POINT_SPACING_M)
        points, normals = self.frame(s)
        return points[None] + np.asarray(offsets)[:, None, None] * normals[None]


@dataclass
class _Arm:
    """One street leaving a node: ``out_dir`` (2,) unit, from the node along the street."""

    edge: int  # index into the builder's edges
    out_dir: np.ndarray
    angle: float
    half_width: float
    lanes: int
    in_group: int = -1  # lane group arriving at the node along this arm
    out_group: int = -1  # lane group leaving the node along this arm

    @property
    def normal(self) -> np.ndarray:
        return left_normal(self.out_dir)


def _sidewalk(centerline: np.ndarray, kerb: np.ndarray) -> Polygon:
    """The sidewalk band beyond ``kerb`` (N, 2), the right boundary of a lane or connector with
    ``centerline`` (N, 2): the kerb at full resolution, its outer edge at about 1 m spacing."""
    outer = kerb + SIDEWALK_WIDTH_M * unit(kerb - centerline)
    keep = np.unique(np.r_[0 : len(outer) : 4, len(outer) - 1])
    return clean_polygon(np.vstack([kerb, outer[keep[::-1]]]))


# ------------------------------------------------------------------------------ lane mapping


def classify_turn(in_heading: np.ndarray, out_heading: np.ndarray) -> str:
    """'left' / 'straight' / 'right' for a move from heading ``in_heading`` to ``out_heading``."""
    delta = math.degrees(signed_angle(in_heading, out_heading))
    if abs(delta) < STRAIGHT_MAX_DEG:
        return "straight"
    return "left" if delta > 0 else "right"


def lane_pairs(n_in: int, targets: dict[str, int]) -> list[tuple[str, int, int]]:
    """Lane-level movements of one approach: (turn, exit lane index, entry lane index).

    n_in: lanes of the approach; targets: turn kind -> lanes of the target group. Left turns leave
    from the leftmost lane(s) into the leftmost, right turns from the rightmost into the
    rightmost, straight i -> i. Without a straight move all lanes turn (split between left and
    right when both exist), so every lane continues.
    """
    pairs: list[tuple[str, int, int]] = []
    if "straight" in targets:
        n_out = targets["straight"]
        pairs += [("straight", i, min(i, n_out - 1)) for i in range(n_in)]
        left, right = [0], [n_in - 1]
    elif "left" in targets and "right" in targets:
        split = max(1, n_in // 2)
        left, right = list(range(split)), list(range(split, n_in)) or [n_in - 1]
    else:
        left = right = list(range(n_in))
    if "left" in targets:
        n_out = targets["left"]
        pairs += [("left", lane, min(k, n_out - 1)) for k, lane in enumerate(left)]
    if "right" in targets:
        n_out = targets["right"]
        pairs += [
            ("right", lane, n_out - 1 - min(k, n_out - 1)) for k, lane in enumerate(right[::-1])
        ]
    return pairs


# ------------------------------------------------------------------------------------ builder


class _Builder:
    """Builds one RoadNetwork; every fid comes from one counter, so fids are unique network-wide."""

    def __init__(self, location: str, rng: np.random.Generator, size: NetworkSize):
        self.size, self.rng = size, rng
        self.origin = np.asarray(LOCATIONS[location].utm_origin, dtype=np.float64)
        self.net = RoadNetwork(location=location)
        self._next_fid = 1
        self.nodes = np.zeros((0, 2))
        self.edges: list[_Edge] = []
        self.arms: list[list[_Arm]] = []  # per node, sorted counter-clockwise by angle
        self.d_box = np.zeros(0)  # per node: junction box edge distance from the node (m)
        self.node_fids: list[int] = []
        self.stop_fids: dict[int, int] = {}  # lane fid -> its stop polygon fid
        self.group_connectors: dict[tuple[int, int], int] = {}

    def fid(self) -> int:
        self._next_fid += 1
        return self._next_fid - 1

    def build(self) -> RoadNetwork:
        self._make_grid()
        self._make_arms()
        for edge in self.edges:
            self._make_segment(edge)
        for node in range(len(self.nodes)):
            self._make_junction(node)
        self._finish_group_connectors()
        self._make_carparks()
        return self.net

    # -- grid ---------------------------------------------------------------------------------

    def _make_grid(self) -> None:
        """Jittered node positions, street classes per grid line and the segments between."""
        s, rng = self.size, self.rng
        i, j = np.meshgrid(np.arange(s.cols), np.arange(s.rows))  # node index = j * cols + i
        grid = np.column_stack([i.ravel() - (s.cols - 1) / 2, j.ravel() - (s.rows - 1) / 2])
        jitter = rng.uniform(-s.jitter_m, s.jitter_m, size=grid.shape)
        self.nodes = self.origin + grid * s.block_length_m + jitter
        col_streets = [self._street(k in (0, s.cols - 1)) for k in range(s.cols)]
        row_streets = [self._street(k in (0, s.rows - 1)) for k in range(s.rows)]
        for jj in range(s.rows):
            for ii in range(s.cols):
                node = jj * s.cols + ii
                if ii + 1 < s.cols:
                    self._add_edge(node, node + 1, row_streets[jj])
                if jj + 1 < s.rows:
                    self._add_edge(node, node + s.cols, col_streets[ii])

    def _street(self, border: bool) -> tuple[int, float]:
        """(lanes per direction, speed limit m/s) of one grid line."""
        s = self.size
        side = not border and self.rng.random() < s.side_street_fraction
        lo, hi = s.side_street_speed_mps if side else s.arterial_speed_mps
        speed = round(float(self.rng.uniform(lo, hi)), 1)
        return (s.side_street_lanes if side else s.arterial_lanes), speed

    def _add_edge(self, a: int, b: int, street: tuple[int, float]) -> None:
        chord = self.nodes[b] - self.nodes[a]
        length = float(np.linalg.norm(chord))
        edge = _Edge(a, b, self.nodes[a], chord / length, length, street[0], street[1])
        if self.rng.random() < self.size.curved_fraction:
            edge.bend = str(self.rng.choice(["bump", "s"]))
            edge.amp = float(self.rng.uniform(0.5, 1.0) * self.rng.choice([-1.0, 1.0]))
        self.edges.append(edge)

    def _make_arms(self) -> None:
        """Arms per node (CCW), junction box size, lane extents and bend limits per segment."""
        w = self.size.lane_width_m
        self.arms = [[] for _ in self.nodes]
        for k, e in enumerate(self.edges):
            for node, out in ((e.a, e.dir), (e.b, -e.dir)):
                angle = math.atan2(out[1], out[0]) % (2 * math.pi)
                self.arms[node].append(_Arm(k, out, angle, e.lanes * w, e.lanes))
        for arms in self.arms:
            arms.sort(key=lambda arm: arm.angle)
        self.d_box = np.array([max(a.half_width for a in arms) for arms in self.arms])
        self.d_box += CORNER_MARGIN_M
        lane_end = self.d_box + BOX_TO_LANE_END_M
        for e in self.edges:
            e.bend_s0 = lane_end[e.a] + BEND_MARGIN_M
            e.bend_s1 = e.length - lane_end[e.b] - BEND_MARGIN_M
            if e.bend in BEND_PEAKS:  # peak offset in metres, capped by the minimum bend radius
                peak, curv = BEND_PEAKS[e.bend]
                span = e.bend_s1 - e.bend_s0
                cap = peak * span**2 / (curv * MIN_BEND_RADIUS_M)
                e.amp = math.copysign(min(abs(e.amp) * self.size.bend_amplitude_m, cap), e.amp)
        self.node_fids = [self.fid() for _ in self.nodes]

    def _lane_end(self, node: int) -> float:
        """Distance (m) from a node to the end / start of the lanes of its arms."""
        return float(self.d_box[node]) + BOX_TO_LANE_END_M

    # -- segments -----------------------------------------------------------------------------

    def _make_segment(self, edge: _Edge) -> None:
        """Road segment, its two lane groups (fwd = a -> b, bwd = b -> a) and the sidewalks along
        its lanes (the junction corners get theirs in ``_corner_walkway``)."""
        s0, s1 = self._lane_end(edge.a), edge.length - self._lane_end(edge.b)
        segment_fid = self.fid()
        groups = {d: self._make_group(edge, d, s0, s1, segment_fid) for d in ("fwd", "bwd")}
        self._arm(edge.a, edge).out_group = self._arm(edge.b, edge).in_group = groups["fwd"]
        self._arm(edge.b, edge).out_group = self._arm(edge.a, edge).in_group = groups["bwd"]
        kerb_lanes = [self.net.lanes[self.net.lane_groups[groups[d]].lane_fids[-1]] for d in groups]
        right_fwd, right_bwd = (lane.right_boundary for lane in kerb_lanes)
        self.net.road_segments[segment_fid] = clean_polygon(np.vstack([right_fwd, right_bwd]))
        for lane in kerb_lanes:
            self.net.walkways[self.fid()] = _sidewalk(lane.centerline, lane.right_boundary)

    def _arm(self, node: int, edge: _Edge) -> _Arm:
        return next(a for a in self.arms[node] if self.edges[a.edge] is edge)

    def _make_group(self, edge: _Edge, direction: str, s0: float, s1: float, seg: int) -> int:
        """One lane group of a segment; lanes left to right, adjacent lanes share a boundary."""
        n, w = edge.lanes, self.size.lane_width_m
        sign = -1.0 if direction == "fwd" else 1.0  # fwd lanes lie right of the a -> b median
        bound_offsets = sign * w * np.arange(n + 1)  # boundary k: left of lane k
        centre_offsets = sign * w * (np.arange(n) + 0.5)
        offsets = np.concatenate([bound_offsets, centre_offsets])
        lines = edge.offset_lines(s0, s1, offsets, sign * w * n / 2)
        if direction == "bwd":
            lines = np.ascontiguousarray(lines[:, ::-1])
        bounds, centres = lines[: n + 1], lines[n + 1 :]
        bound_fids = [self.fid() for _ in range(n + 1)]
        self.net.boundaries.update(zip(bound_fids, bounds, strict=True))
        group_fid, lane_fids = self.fid(), [self.fid() for _ in range(n)]
        for i, lane_fid in enumerate(lane_fids):
            self.net.lanes[lane_fid] = Lane(
                fid=lane_fid,
                lane_group_fid=group_fid,
                lane_index=i,
                centerline=centres[i],
                left_boundary=bounds[i],
                right_boundary=bounds[i + 1],
                left_boundary_fid=bound_fids[i],
                right_boundary_fid=bound_fids[i + 1],
                speed_limit_mps=edge.speed_mps,
                width_m=w,
                left_lane_fid=lane_fids[i - 1] if i > 0 else None,
                right_lane_fid=lane_fids[i + 1] if i + 1 < n else None,
            )
        polygon = clean_polygon(np.vstack([bounds[0], bounds[n][::-1]]))
        self.net.lane_groups[group_fid] = LaneGroup(group_fid, lane_fids, polygon, seg)
        return group_fid

    # -- junctions ----------------------------------------------------------------------------

    def _make_junction(self, node: int) -> None:
        """Connectors and stop polygons per approach, then corner sidewalks, box, crosswalks."""
        arms, fid = self.arms[node], self.node_fids[node]
        for phase, arm in enumerate(arms):
            self._make_approach(node, phase, arm)
        pairs = zip(arms, arms[1:] + arms[:1], strict=True)
        corners = [self._corner_walkway(a, b) for a, b in pairs]
        for polygon in corners:
            self.net.walkways[self.fid()] = polygon
        sidewalks = shapely.union_all(corners)
        box = largest_polygon(self._box(node).difference(sidewalks))
        self.net.intersections[fid] = Intersection(fid, box, self._signal(len(arms)))
        for arm in arms:
            self._make_crosswalk(node, arm, sidewalks)

    def _signal(self, num_approaches: int) -> SignalPlan:
        """Protected phases: one per approach, so conflicting movements never share green."""
        green = round(float(self.rng.uniform(*GREEN_S)) * 2) / 2
        all_red = round(float(self.rng.uniform(*ALL_RED_S)) * 2) / 2
        cycle = num_approaches * (green + YELLOW_S + all_red)
        offset = round(float(self.rng.uniform(0.0, cycle)), 1) % cycle
        return SignalPlan(num_approaches, green, YELLOW_S, all_red, offset)

    def _kerb_points(self, node: int, arm: _Arm, d: float, extra: float = 0.0) -> np.ndarray:
        """(2, 2) right and left kerb points (+ ``extra`` outwards) of an arm at distance d."""
        base = self.nodes[node] + d * arm.out_dir
        half = arm.half_width + extra
        return np.stack([base - half * arm.normal, base + half * arm.normal])

    def _corner(self, node: int, a: _Arm, b: _Arm, extra: float) -> np.ndarray | None:
        """Where a's left kerb line meets b's right kerb line (None when nearly parallel)."""
        if abs(math.sin(b.angle - a.angle)) < 0.5:
            return None
        c = self.nodes[node]
        pa = c + (a.half_width + extra) * a.normal
        pb = c - (b.half_width + extra) * b.normal
        return line_intersection(pa, a.out_dir, pb, b.out_dir)

    def _box(self, node: int) -> Polygon:
        """The junction box: kerb ends of every arm at d_box joined through the kerb corners
        (the caller cuts off what the rounded corner sidewalks cover)."""
        arms, d = self.arms[node], float(self.d_box[node])
        ring: list[np.ndarray] = []
        for a, b in zip(arms, arms[1:] + arms[:1], strict=True):
            ring += list(self._kerb_points(node, a, d))
            corner = self._corner(node, a, b, 0.0)
            if corner is not None:
                ring.append(corner)
        return clean_polygon(ring)

    def _make_crosswalk(self, node: int, arm: _Arm, sidewalks: shapely.Geometry) -> None:
        """Crossing of the whole arm from sidewalk to sidewalk (``sidewalks``: the node's corner
        walkways); ``walk_path`` holds the two kerb points on its centre line."""
        d0 = float(self.d_box[node]) + CROSSWALK_GAP_M
        d1 = d0 + CROSSWALK_WIDTH_M
        centre = self.nodes[node] + 0.5 * (d0 + d1) * arm.out_dir
        reach = arm.half_width + 4 * SIDEWALK_WIDTH_M
        across = LineString([centre - reach * arm.normal, centre + reach * arm.normal])
        hits = shapely.get_coordinates(across.intersection(sidewalks))
        t = (hits - centre) @ arm.normal  # lateral positions where the line meets sidewalks
        right = t[t < 0].max() if (t < 0).any() else -arm.half_width
        left = t[t > 0].min() if (t > 0).any() else arm.half_width
        polygon = rectangle(self.nodes[node], arm.out_dir, d0, d1, right - 0.5, left + 0.5)
        walk = np.stack([centre + right * arm.normal, centre + left * arm.normal])
        fid = self.fid()
        self.net.crosswalks[fid] = Crosswalk(fid, polygon, walk, self.node_fids[node])

    def _corner_walkway(self, a: _Arm, b: _Arm) -> Polygon:
        """Sidewalk between arm a's left sidewalk and arm b's right one (b follows a CCW): a band
        right of the kerb that traffic from a's rightmost lane into b follows (the right boundary
        of that connector): a rounded corner, a straight kerb or the outside of a bend."""
        conn = self._kerb_connector(a, b)
        return _sidewalk(conn.centerline, conn.right_boundary)

    def _kerb_connector(self, a: _Arm, b: _Arm) -> LaneConnector:
        """The connector from a's rightmost incoming lane into b's rightmost reachable lane."""
        exit_fid = self.net.lane_groups[a.in_group].lane_fids[-1]
        into_b = [c for c in self.net.outgoing(exit_fid) if c.entry_lane_fid in self._lanes_of(b)]
        return max(into_b, key=lambda c: self.net.lanes[c.entry_lane_fid].lane_index)

    def _lanes_of(self, arm: _Arm) -> list[int]:
        return self.net.lane_groups[arm.out_group].lane_fids

    def _make_approach(self, node: int, phase: int, arm: _Arm) -> None:
        """Stop polygons and connectors of the lanes arriving along ``arm``."""
        group = self.net.lane_groups[arm.in_group]
        for lane_fid in group.lane_fids:
            lane = self.net.lanes[lane_fid]
            stop_fid = self.stop_fids[lane_fid] = self.fid()
            heading = -arm.out_dir
            half = 0.5 * lane.width_m
            polygon = rectangle(lane.centerline[-1], heading, 0.0, STOP_DEPTH_M, -half, half)
            self.net.stop_polygons[stop_fid] = StopPolygon(stop_fid, polygon, "traffic_light", [])
        targets: dict[str, _Arm] = {}
        for other in self.arms[node]:
            if other is not arm:
                turn = classify_turn(-arm.out_dir, other.out_dir)
                if turn in targets:
                    raise RuntimeError(f"two {turn} arms at node {node}: grid geometry too skewed")
                targets[turn] = other
        pairs = lane_pairs(len(group.lane_fids), {k: t.lanes for k, t in targets.items()})
        for turn, i, j in pairs:
            target = self.net.lane_groups[targets[turn].out_group]
            self._make_connector(node, phase, turn, group.lane_fids[i], target.lane_fids[j])

    def _make_connector(
        self, node: int, phase: int, turn: str, exit_fid: int, entry_fid: int
    ) -> None:
        exit_lane, entry_lane = self.net.lanes[exit_fid], self.net.lanes[entry_fid]
        p0, p3 = exit_lane.centerline[-1], entry_lane.centerline[0]
        t0 = unit(exit_lane.centerline[-1] - exit_lane.centerline[-2])
        t3 = unit(entry_lane.centerline[1] - entry_lane.centerline[0])
        ctrl = cubic_bezier(p0, t0, p3, t3)
        lines, radius = connector_lines(ctrl, exit_lane.width_m)
        speed = min(exit_lane.speed_limit_mps, entry_lane.speed_limit_mps)
        speed = max(
            MIN_CONNECTOR_SPEED_MPS, min(speed, math.sqrt(TURN_LATERAL_ACCEL_MPS2 * radius))
        )
        key = (exit_lane.lane_group_fid, entry_lane.lane_group_fid)
        if key not in self.group_connectors:
            self.group_connectors[key] = self.fid()
        fid, left_fid, right_fid = self.fid(), self.fid(), self.fid()
        self.net.boundaries[left_fid], self.net.boundaries[right_fid] = lines[1], lines[2]
        stop_fid = self.stop_fids[exit_fid]
        self.net.stop_polygons[stop_fid].connector_fids.append(fid)
        self.net.connectors[fid] = LaneConnector(
            fid=fid,
            exit_lane_fid=exit_fid,
            entry_lane_fid=entry_fid,
            lane_group_connector_fid=self.group_connectors[key],
            intersection_fid=self.node_fids[node],
            turn=turn,
            centerline=lines[0],
            left_boundary=lines[1],
            right_boundary=lines[2],
            left_boundary_fid=left_fid,
            right_boundary_fid=right_fid,
            speed_limit_mps=round(speed, 1),
            signal_phase=phase,
            stop_line_fid=stop_fid,
        )

    def _finish_group_connectors(self) -> None:
        """One lane group connector per (from group, to group); polygon from its outer bounds."""
        members: dict[int, list[LaneConnector]] = {}
        for conn in self.net.connectors.values():
            members.setdefault(conn.lane_group_connector_fid, []).append(conn)
        for (from_group, to_group), fid in self.group_connectors.items():
            conns = sorted(
                members[fid],
                key=lambda c: (
                    self.net.lanes[c.exit_lane_fid].lane_index,
                    self.net.lanes[c.entry_lane_fid].lane_index,
                ),
            )
            polygon = clean_polygon(
                np.vstack([conns[0].left_boundary, conns[-1].right_boundary[::-1]])
            )
            if not polygon.is_valid:
                polygon = shapely.union_all([c.polygon for c in conns]).convex_hull
            self.net.lane_group_connectors[fid] = LaneGroupConnector(
                fid=fid,
                from_lane_group_fid=from_group,
                to_lane_group_fid=to_group,
                intersection_fid=conns[0].intersection_fid,
                connector_fids=[c.fid for c in conns],
                polygon=polygon,
            )

    # -- carparks -----------------------------------------------------------------------------

    def _make_carparks(self) -> None:
        """Rectangles beside segments, 2 m behind the sidewalk, clear of all road areas."""
        taken = [
            *self.net.road_segments.values(),
            *(i.polygon for i in self.net.intersections.values()),
            *self.net.walkways.values(),
        ]
        roads = shapely.STRtree(taken)
        for k in self.rng.permutation(2 * len(self.edges)):
            if len(self.net.carpark_areas) >= self.size.num_carparks:
                return
            polygon = self._carpark_beside(self.edges[int(k) // 2], 1.0 if k % 2 else -1.0)
            margin = polygon.buffer(1.0)
            if len(roads.query(margin, predicate="intersects")) or any(
                margin.intersects(p) for p in self.net.carpark_areas.values()
            ):
                continue
            self.net.carpark_areas[self.fid()] = polygon

    def _carpark_beside(self, edge: _Edge, side: float) -> Polygon:
        length = min(40.0, 0.35 * edge.length)
        near = edge.lanes * self.size.lane_width_m + SIDEWALK_WIDTH_M + 2.0
        mid = (
            edge.start
            + 0.5 * edge.length * edge.dir
            + side * (near + 0.5 * CARPARK_DEPTH_M) * edge.normal
        )
        half = 0.5 * CARPARK_DEPTH_M
        return rectangle(mid, edge.dir, -0.5 * length, 0.5 * length, -half, half)
