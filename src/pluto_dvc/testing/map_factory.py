"""Small nuPlan maps for tests, as the ``LayerTable``s that ``write_maps_root`` takes.

``make_map_layers(location)`` builds, around the location's ``utm_origin`` (x0, y0), in UTM metres:

- lane 11 (roadblock 101, index 0): eastbound on y = y0 from x0 to x0+50, 15 m/s; left boundary
  201 (stored eastbound), right boundary 202 (stored westbound: readers must flip it).
- lane 9 (roadblock 101, index 1): eastbound on y = y0-3.5, shares 202 as its left boundary.
- lane 13 (roadblock 103): westbound on y = y0+3.5 from x0+50 to x0, no speed limit; its left
  boundary is 201 and its right boundary 203 (both stored eastbound: reversed for this lane).
- lane 12 (roadblock 102): eastbound on y = y0 from x0+70 to x0+120.
- lane 14 (roadblock 104): southbound on x = x0+62 from y0-12 to y0-62.
- connector 21: straight from lane 11 (exit) to lane 12 (entry), roadblock connector 301,
  intersection 401, 10 m/s, stop line 501.
- connector 22: right turn (quarter circle, radius 12) from lane 11 to lane 14, roadblock
  connector 302, intersection 401, no speed limit, no stop line.
- intersection 401, crosswalk 601, walkway 701, carpark 801, stop polygon 501, traffic light,
  dubins node, generic drivable area and road segment (one each).

Baseline paths are dense (0.25 m). Rows are written in reverse fid order so readers must sort.
``make_grid_layers(location, rows, cols)`` builds a larger map (2 * rows * cols lanes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from shapely import union_all
from shapely.geometry import LineString, Point, Polygon, box

from pluto_dvc.nuplan.locations import LOCATIONS, MapLocation
from pluto_dvc.nuplan.map_layers import LayerTable
from pluto_dvc.nuplan.map_schema import LAYERS
from pluto_dvc.nuplan.map_writer import write_maps_root

LANE_WIDTH = 3.5
STEP = 0.25  # baseline path point spacing, m


def straight(a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """(N, 2) points from a to b about STEP apart."""
    n = max(2, math.ceil(math.dist(a, b) / STEP) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * np.asarray(a, dtype=float) + t * np.asarray(b, dtype=float)


def arc(centre: tuple[float, float], radius: float, a0: float, a1: float) -> np.ndarray:
    """(N, 2) points on a circle from angle a0 to a1 (rad) about STEP apart."""
    n = max(2, math.ceil(abs(a1 - a0) * radius / STEP) + 1)
    a = np.linspace(a0, a1, n)
    return np.column_stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)])


def offset(line: np.ndarray, d: float) -> np.ndarray:
    """The polyline shifted d metres to its left (negative: right)."""
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return line + d * np.column_stack([-tangent[:, 1], tangent[:, 0]])


@dataclass
class MapBuilder:
    """Accumulates rows per layer; ``layers()`` returns them as LayerTables (reverse fid order)."""

    rows: dict[str, list[tuple[dict, object]]] = field(default_factory=dict)
    boundaries: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, layer: str, fid: int, geometry: object, **columns: object) -> None:
        self.rows.setdefault(layer, []).append(({"fid": fid, **columns}, geometry))

    def boundary(self, fid: int, points: np.ndarray) -> None:
        if fid not in self.boundaries:
            self.boundaries[fid] = points
            self.add("boundaries", fid, LineString(points))

    def lane(
        self,
        fid: int,
        group: int,
        index: int,
        centre: np.ndarray,
        bounds: tuple[int, int],
        speed: float = float("nan"),
        baseline_fid: int | None = None,
        stored: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """A lane; ``stored`` gives the boundary lines as stored (default: offsets of centre)."""
        left, right = offset(centre, LANE_WIDTH / 2), offset(centre, -LANE_WIDTH / 2)
        left_s, right_s = stored or (left, right)
        self.boundary(bounds[0], left_s)
        self.boundary(bounds[1], right_s)
        polygon = Polygon(np.vstack([left, right[::-1]]))
        self.add(
            "lanes_polygons",
            fid,
            polygon,
            lane_fid=fid,
            lane_index=index,
            lane_group_fid=group,
            left_boundary_fid=bounds[0],
            right_boundary_fid=bounds[1],
            speed_limit_mps=speed,
        )
        bp = baseline_fid if baseline_fid is not None else 10_000 + fid
        self.add("baseline_paths", bp, LineString(centre), lane_fid=fid, lane_connector_fid=None)

    def connector(
        self,
        fid: int,
        exit_lane: int,
        entry_lane: int,
        group_connector: int,
        intersection: int | None,
        centre: np.ndarray,
        bounds: tuple[int, int],
        speed: float = float("nan"),
        stop_lines: str = "",
    ) -> None:
        left, right = offset(centre, LANE_WIDTH / 2), offset(centre, -LANE_WIDTH / 2)
        self.boundary(bounds[0], left)
        self.boundary(bounds[1], right)
        self.add(
            "lane_connectors",
            fid,
            LineString(centre),
            entry_lane_fid=entry_lane,
            exit_lane_fid=exit_lane,
            lane_group_connector_fid=group_connector,
            intersection_fid=intersection,
            speed_limit_mps=speed,
            traffic_light_stop_line_fids=stop_lines,
        )
        self.add(
            "baseline_paths",
            20_000 + fid,
            LineString(centre),
            lane_fid=None,
            lane_connector_fid=fid,
        )
        self.add(
            "gen_lane_connectors_scaled_width_polygons",
            30_000 + fid,
            Polygon(np.vstack([left, right[::-1]])),
            lane_connector_fid=fid,
            left_boundary_fid=bounds[0],
            right_boundary_fid=bounds[1],
        )

    def connector_group(
        self, fid: int, frm: int, to: int, connector: int, intersection_fid: int
    ) -> None:
        """A lane-group connector ``frm`` -> ``to`` covering lane connector ``connector``."""
        poly = next(
            g
            for r, g in self.rows["gen_lane_connectors_scaled_width_polygons"]
            if r["lane_connector_fid"] == connector
        )
        self.add(
            "lane_group_connectors",
            fid,
            poly,
            from_lane_group_fid=frm,
            to_lane_group_fid=to,
            intersection_fid=intersection_fid,
        )

    def layers(self) -> dict[str, LayerTable]:
        out = {}
        for layer, rows in self.rows.items():
            rows = sorted(rows, key=lambda r: -r[0]["fid"])
            names = LAYERS[layer].column_names
            out[layer] = LayerTable(
                fields={n: [r[0][n] for r in rows] for n in names},
                geometry=[r[1] for r in rows],
            )
        return out


def make_map_layers(location: MapLocation) -> dict[str, LayerTable]:
    """The small map described in the module docstring."""
    x0, y0 = location.utm_origin
    b = MapBuilder()
    c11 = straight((x0, y0), (x0 + 50, y0))
    # Boundary 202 (lane 11 right = lane 9 left) is stored westbound.
    b.lane(11, 101, 0, c11, (201, 202), 15.0, stored=(offset(c11, 1.75), offset(c11, -1.75)[::-1]))
    b.lane(9, 101, 1, straight((x0, y0 - 3.5), (x0 + 50, y0 - 3.5)), (202, 208), 15.0)
    c13 = straight((x0 + 50, y0 + 3.5), (x0, y0 + 3.5))
    b.lane(13, 103, 0, c13, (201, 203), stored=(offset(c13, 1.75)[::-1], offset(c13, -1.75)[::-1]))
    b.lane(12, 102, 0, straight((x0 + 70, y0), (x0 + 120, y0)), (204, 205), 15.0)
    b.lane(14, 104, 0, straight((x0 + 62, y0 - 12), (x0 + 62, y0 - 62)), (206, 207), 12.0)
    b.connector(
        21, 11, 12, 301, 401, straight((x0 + 50, y0), (x0 + 70, y0)), (211, 212), 10.0, "501"
    )
    turn = arc((x0 + 50, y0 - 12), 12.0, math.pi / 2, 0.0)
    b.connector(22, 11, 14, 302, 401, turn, (213, 214))
    for fid, group in ((101, (11, 9)), (102, (12,)), (103, (13,)), (104, (14,))):
        polys = [g for r, g in b.rows["lanes_polygons"] if r["fid"] in group]
        b.add("lane_groups_polygons", fid, _union(polys))
    for fid, frm, to, conn in ((301, 101, 102, 21), (302, 101, 104, 22)):
        b.connector_group(fid, frm, to, conn, 401)
    b.add("intersections", 401, box(x0 + 50, y0 - 12, x0 + 70, y0 + 8))
    b.add("crosswalks", 601, box(x0 + 72, y0 - 2, x0 + 76, y0 + 6))
    b.add("walkways", 701, box(x0, y0 + 6, x0 + 50, y0 + 8))
    b.add("carpark_areas", 801, box(x0 - 40, y0 + 10, x0 - 20, y0 + 30))
    b.add(
        "stop_polygons", 501, box(x0 + 48, y0 - 1.75, x0 + 50, y0 + 1.75), stop_polygon_type_fid=2
    )
    b.add("traffic_lights", 1201, Point(x0 + 50, y0), lane_connector_fid=21)
    b.add("dubins_nodes", 1301, Point(x0 + 25, y0))
    b.add("generic_drivable_areas", 1401, box(x0, y0 - 5.25, x0 + 120, y0 + 5.25))
    b.add("road_segments", 1501, box(x0, y0 - 5.25, x0 + 50, y0 + 5.25))
    return b.layers()


def make_grid_layers(location: MapLocation, rows: int, cols: int) -> dict[str, LayerTable]:
    """rows x cols roadblocks of two 40 m eastbound lanes, joined by 20 m straight connectors."""
    x0, y0 = location.utm_origin
    b = MapBuilder()
    for r in range(rows):
        for c in range(cols):
            group = 1_000_000 + r * 1000 + c
            xa, y = x0 + 60.0 * c, y0 + 20.0 * r
            polys = []
            for k in range(2):
                fid = group * 10 + k
                b.lane(
                    fid,
                    group,
                    k,
                    straight((xa, y - 3.5 * k), (xa + 40, y - 3.5 * k)),
                    (3 * group + k, 3 * group + k + 1),
                    13.4,
                )
                polys.append(b.rows["lanes_polygons"][-1][1])
            b.add("lane_groups_polygons", group, _union(polys))
            if c + 1 == cols:
                continue
            gc = 2_000_000 + r * 1000 + c
            polys = []
            for k in range(2):
                centre = straight((xa + 40, y - 3.5 * k), (xa + 60, y - 3.5 * k))
                bounds = (3 * gc + k, 3 * gc + k + 1)
                b.connector(
                    gc * 10 + k, group * 10 + k, (group + 1) * 10 + k, gc, gc, centre, bounds, 8.0
                )
                polys.append(b.rows["gen_lane_connectors_scaled_width_polygons"][-1][1])
            b.add(
                "lane_group_connectors",
                gc,
                _union(polys),
                from_lane_group_fid=group,
                to_lane_group_fid=group + 1,
                intersection_fid=gc,
            )
            b.add("intersections", gc, box(xa + 40, y - 5.25, xa + 60, y + 1.75))
            b.add("crosswalks", gc, box(xa + 41, y - 5.25, xa + 44, y + 1.75))
    return b.layers()


def _union(polys: list) -> Polygon:
    """One polygon: the polygon itself, or the bounding box of side-by-side straight lanes."""
    return polys[0] if len(polys) == 1 else box(*union_all(polys).bounds)


def write_test_maps_root(root: Path) -> Path:
    """The small map for all four locations; returns the root."""
    write_maps_root(root, {name: make_map_layers(loc) for name, loc in LOCATIONS.items()})
    return root
