"""Human-readable summaries of a nuPlan log database and of a map (``pluto-dvc log-info`` /
``map-info``): what a user checks first when pointing the pipeline at a download."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.log_schema import CATEGORY_NAMES
from pluto_dvc.nuplan.map_reader import MapsRoot
from pluto_dvc.nuplan.scenarios import enumerate_scenarios


def describe_log(path: str | Path) -> str:
    """Frames, duration, objects per category, scenes, scenario candidates and tags of one log."""
    log = load_log(path)
    seconds = (
        (log.clock.timestamp_us[-1] - log.clock.timestamp_us[0]) / 1e6 if log.num_frames else 0
    )
    cats = Counter(CATEGORY_NAMES[c] for c in log.tracks.category)
    tracks_per_cat = Counter(
        CATEGORY_NAMES[c]
        for c in np.unique(np.stack([log.tracks.track_index, log.tracks.category]), axis=1)[1]
    )
    tags = Counter(log.tags.type.tolist())
    candidates = enumerate_scenarios(log)
    lines = [
        f"log {log.meta.log_name} ({log.meta.vehicle_name}, {log.meta.date}) at {log.meta.location}",
        f"  frames: {log.num_frames} over {seconds:.1f} s; scenes: {log.num_scenes}",
        f"  boxes: {log.num_boxes} of {log.num_tracks} tracks",
        *(f"    {n:<15} {tracks_per_cat[n]:>5} tracks {cats[n]:>8} boxes" for n in CATEGORY_NAMES),
        f"  traffic-light rows: {len(log.traffic_lights.status)}",
        f"  scenario candidates (devkit rules): {len(candidates.token_hex)}",
        f"  tags: {sum(tags.values())} of {len(tags)} types",
        *(f"    {t:<58} {c:>6}" for t, c in sorted(tags.items())),
    ]
    return "\n".join(lines)


def describe_map(maps_root: str | Path, location: str) -> str:
    """Layer counts, lane-graph size and extent of one location's map."""
    nmap = MapsRoot(maps_root).load(location)
    pts = nmap.lanes.centerline.points
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    lane_pts = len(pts)
    steps = np.hypot(*np.diff(pts, axis=0).T)
    inside = np.ones(len(steps), bool)  # drop the jumps from one lane's end to the next start
    inside[nmap.lanes.centerline.offsets[1:-1] - 1] = False
    spacing = float(np.median(steps[inside])) if inside.any() else 0.0
    return "\n".join(
        [
            f"map {location} ({nmap.path})",
            f"  lanes: {len(nmap.lanes)}, lane connectors: {len(nmap.lane_connectors)}",
            f"  roadblocks: {len(nmap.roadblocks)}, roadblock connectors: "
            f"{len(nmap.roadblock_connectors)}",
            f"  crosswalks: {len(nmap.crosswalks)}, intersections: {len(nmap.intersections)}, "
            f"stop polygons: {len(nmap.stop_polygons)}, carparks: {len(nmap.carpark_areas)}",
            f"  extent: {x1 - x0:.0f} m x {y1 - y0:.0f} m; centreline points: {lane_pts} "
            f"(median {spacing:.2f} m apart)",
        ]
    )
