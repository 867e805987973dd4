"""Road elements of the traffic simulation: lanes and connectors as polylines with arc length,
their successors, the connectors that cross them and the crosswalks they pass over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString

from pluto_dvc.synthetic.network import RoadNetwork


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
