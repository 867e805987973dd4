"""Turn a :class:`RoadNetwork` into the 16 nuPlan map layers (``LayerTable`` per layer name).

Columns follow ``nuplan.map_schema.LAYERS``; rows are sorted by fid. Network objects keep their
fids; the rows that exist only on disk (baseline paths, connector polygons, traffic lights) are
numbered 1..N in their layer, lanes first and then connectors, each by fid. Geometries are in the
network's UTM coordinates. Lane-connector polygons and lane polygons are the areas between their
left and right boundaries.
"""

from __future__ import annotations

import numpy as np
from shapely.geometry import LineString, Point, Polygon

from pluto_dvc.nuplan.map_layers import LayerTable
from pluto_dvc.synthetic.network import RoadNetwork

# nuPlan's stop line type codes (stop_polygons.stop_polygon_type_fid)
STOP_POLYGON_TYPE_FIDS: dict[str, int] = {"crosswalk": 0, "stop_sign": 1, "traffic_light": 2}


def network_to_layers(network: RoadNetwork) -> dict[str, LayerTable]:
    """Every vector layer of a nuPlan map for ``network`` (``dubins_nodes`` is empty)."""
    layers = {
        "baseline_paths": _baseline_paths(network),
        "boundaries": _boundaries(network),
        "carpark_areas": _polygons(network.carpark_areas),
        "crosswalks": _polygons({k: c.polygon for k, c in network.crosswalks.items()}),
        "dubins_nodes": LayerTable(fields={"fid": np.zeros(0, np.int64)}, geometry=[]),
        "gen_lane_connectors_scaled_width_polygons": _connector_polygons(network),
        "generic_drivable_areas": _polygons(network.generic_drivable_areas),
        "intersections": _polygons({k: i.polygon for k, i in network.intersections.items()}),
        "lane_connectors": _lane_connectors(network),
        "lane_group_connectors": _lane_group_connectors(network),
        "lane_groups_polygons": _polygons({k: g.polygon for k, g in network.lane_groups.items()}),
        "lanes_polygons": _lanes(network),
        "road_segments": _polygons(network.road_segments),
        "stop_polygons": _stop_polygons(network),
        "traffic_lights": _traffic_lights(network),
        "walkways": _polygons(network.walkways),
    }
    for table in layers.values():
        table.validate()
    return layers


def _ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _polygons(polygons: dict[int, Polygon]) -> LayerTable:
    fids = sorted(polygons)
    return LayerTable(fields={"fid": _ints(fids)}, geometry=[polygons[f] for f in fids])


def _boundaries(network: RoadNetwork) -> LayerTable:
    fids = sorted(network.boundaries)
    lines = [LineString(network.boundaries[f]) for f in fids]
    return LayerTable(fields={"fid": _ints(fids)}, geometry=lines)


def _lanes(network: RoadNetwork) -> LayerTable:
    lanes = [network.lanes[f] for f in sorted(network.lanes)]
    fields = {
        "fid": _ints([ln.fid for ln in lanes]),
        "lane_fid": _ints([ln.fid for ln in lanes]),
        "lane_index": _ints([ln.lane_index for ln in lanes]),
        "lane_group_fid": _ints([ln.lane_group_fid for ln in lanes]),
        "left_boundary_fid": _ints([ln.left_boundary_fid for ln in lanes]),
        "right_boundary_fid": _ints([ln.right_boundary_fid for ln in lanes]),
        "speed_limit_mps": np.asarray([ln.speed_limit_mps for ln in lanes], dtype=np.float64),
    }
    return LayerTable(fields=fields, geometry=[ln.polygon for ln in lanes])


def _lane_connectors(network: RoadNetwork) -> LayerTable:
    conns = [network.connectors[f] for f in sorted(network.connectors)]
    stop_lines = ["" if c.stop_line_fid is None else str(c.stop_line_fid) for c in conns]
    fields = {
        "fid": _ints([c.fid for c in conns]),
        "entry_lane_fid": _ints([c.entry_lane_fid for c in conns]),
        "exit_lane_fid": _ints([c.exit_lane_fid for c in conns]),
        "lane_group_connector_fid": _ints([c.lane_group_connector_fid for c in conns]),
        "intersection_fid": _ints([c.intersection_fid for c in conns]),
        "speed_limit_mps": np.asarray([c.speed_limit_mps for c in conns], dtype=np.float64),
        "traffic_light_stop_line_fids": stop_lines,
    }
    return LayerTable(fields=fields, geometry=[LineString(c.centerline) for c in conns])


def _connector_polygons(network: RoadNetwork) -> LayerTable:
    conns = [network.connectors[f] for f in sorted(network.connectors)]
    fields = {
        "fid": np.arange(1, len(conns) + 1, dtype=np.int64),
        "lane_connector_fid": _ints([c.fid for c in conns]),
        "left_boundary_fid": _ints([c.left_boundary_fid for c in conns]),
        "right_boundary_fid": _ints([c.right_boundary_fid for c in conns]),
    }
    return LayerTable(fields=fields, geometry=[c.polygon for c in conns])


def _baseline_paths(network: RoadNetwork) -> LayerTable:
    """One centreline per lane (lane_connector_fid NaN) and per connector (lane_fid NaN)."""
    lane_fids, conn_fids = sorted(network.lanes), sorted(network.connectors)
    n_lanes, n = len(lane_fids), len(lane_fids) + len(conn_fids)
    lane_col = np.full(n, np.nan)
    conn_col = np.full(n, np.nan)
    lane_col[:n_lanes] = lane_fids
    conn_col[n_lanes:] = conn_fids
    lines = [LineString(network.lanes[f].centerline) for f in lane_fids]
    lines += [LineString(network.connectors[f].centerline) for f in conn_fids]
    fields = {
        "fid": np.arange(1, n + 1, dtype=np.int64),
        "lane_fid": lane_col,
        "lane_connector_fid": conn_col,
    }
    return LayerTable(fields=fields, geometry=lines)


def _lane_group_connectors(network: RoadNetwork) -> LayerTable:
    groups = [network.lane_group_connectors[f] for f in sorted(network.lane_group_connectors)]
    fields = {
        "fid": _ints([g.fid for g in groups]),
        "from_lane_group_fid": _ints([g.from_lane_group_fid for g in groups]),
        "to_lane_group_fid": _ints([g.to_lane_group_fid for g in groups]),
        "intersection_fid": _ints([g.intersection_fid for g in groups]),
    }
    return LayerTable(fields=fields, geometry=[g.polygon for g in groups])


def _stop_polygons(network: RoadNetwork) -> LayerTable:
    stops = [network.stop_polygons[f] for f in sorted(network.stop_polygons)]
    fields = {
        "fid": _ints([s.fid for s in stops]),
        "stop_polygon_type_fid": _ints([STOP_POLYGON_TYPE_FIDS[s.kind] for s in stops]),
    }
    return LayerTable(fields=fields, geometry=[s.polygon for s in stops])


def _traffic_lights(network: RoadNetwork) -> LayerTable:
    """A Point at the start of every signalised connector."""
    conns = [
        network.connectors[f]
        for f in sorted(network.connectors)
        if network.connectors[f].signal_phase is not None
        and network.intersections[network.connectors[f].intersection_fid].signal is not None
    ]
    fields = {
        "fid": np.arange(1, len(conns) + 1, dtype=np.int64),
        "lane_connector_fid": _ints([c.fid for c in conns]),
    }
    return LayerTable(fields=fields, geometry=[Point(c.centerline[0]) for c in conns])
