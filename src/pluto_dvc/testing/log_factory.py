"""Small but complete nuPlan log tables for tests, in the shape ``write_log_db`` takes.

``make_log_tables()`` builds a log of ``num_scenes`` scenes of ``frames_per_scene`` frames at 20 Hz:
the ego drives a gentle curve (heading sweeps through +-pi), ``num_tracks`` tracks of all
categories come and go, frames carry zero, one or several scenario tags and a few traffic lights.
Rows are deliberately written out of order (lidar_pc shuffled, scenes reversed, boxes track-major)
and an extra non-merged lidar with its own lidar_pc rows, boxes and tags is included, so readers
must sort and filter. ``frame_rows(tables)`` gives the merged lidar_pc rows in timestamp order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pluto_dvc.nuplan.log_schema import (
    CATEGORY_NAMES,
    LOG_FRAME_US,
    MERGED_POINT_CLOUD,
    TRAFFIC_LIGHT_STATUS_NAMES,
    make_tokens,
    token_list,
)
from pluto_dvc.nuplan.log_writer import write_log_db

DEFAULT_LOG_NAME = "2021.07.16.20.45.29_veh-35_01095_01486"
T0_US = 1_626_468_329_000_000
FRAME_US = LOG_FRAME_US
EXTRA_LIDAR = "LidarTop"

# Tags of frame i by i % 10 (frames not listed are untagged).
DEFAULT_TAG_PATTERN: dict[int, tuple[str, ...]] = {
    0: ("stationary_in_traffic", "high_magnitude_speed"),
    3: ("following_lane_with_lead",),
    5: ("changing_lane", "starting_left_turn", "near_multiple_vehicles"),
}
BOX_SIZE = {  # width, length, height per category
    "vehicle": (2.0, 4.8, 1.6),
    "bicycle": (0.7, 1.8, 1.5),
    "pedestrian": (0.6, 0.6, 1.75),
    "traffic_cone": (0.4, 0.4, 0.8),
    "barrier": (0.5, 2.0, 1.0),
    "czone_sign": (0.3, 0.6, 1.2),
    "generic_object": (1.0, 1.0, 1.0),
}


def wrap_angle(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def default_tags(num_frames: int) -> dict[int, tuple[str, ...]]:
    return {
        i: DEFAULT_TAG_PATTERN[i % 10] for i in range(num_frames) if i % 10 in DEFAULT_TAG_PATTERN
    }


def _tokens(log_name: str, table: str, n: int) -> list[bytes]:
    return token_list(make_tokens(log_name, table, n))


def _chain(tokens: Sequence[bytes]) -> tuple[list, list]:
    """next_token / prev_token of rows linked in the given order."""
    if not tokens:
        return [], []
    return list(tokens[1:]) + [None], [None] + list(tokens[:-1])


def make_log_tables(
    log_name: str = DEFAULT_LOG_NAME,
    *,
    location: str = "us-nv-las-vegas-strip",
    num_scenes: int = 7,
    frames_per_scene: int = 20,
    num_tracks: int = 9,
    tags: Mapping[int, Sequence[str]] | None = None,
    scene_names: Sequence[str] | None = None,
    goal_less_scenes: Sequence[int] = (1,),
    lights_per_frame: int = 3,
    extra_lidar: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, list]]:
    """Column tables of one valid log. Frame i (time order) belongs to scene i // frames_per_scene.

    ``tags`` maps a frame to its scenario tags (default: ``default_tags``); ``scene_names`` names
    the scenes in time order (default ``scene-0000`` ...); scenes in ``goal_less_scenes`` have a
    NULL goal. The goal of any other scene is an ego pose between its last two frames.
    """
    n = num_scenes * frames_per_scene
    tags = default_tags(n) if tags is None else tags
    names = [f"scene-{s:04d}" for s in range(num_scenes)] if scene_names is None else scene_names
    rng = np.random.default_rng(seed)

    log_token = _tokens(log_name, "log", 1)[0]
    log = {
        "token": [log_token],
        "vehicle_name": ["veh-35"],
        "date": ["2021-07-16"],
        "timestamp": [T0_US],
        "logfile": [log_name],
        "location": ["las_vegas"],
        "map_version": [location],
    }

    # Ego: pose 2i at frame i, pose 2i+1 half-way to the next frame (referenced by goals only).
    num_poses = 2 * n
    t = np.arange(num_poses) * (FRAME_US // 2)
    heading = np.array([wrap_angle(1.0 + 0.02 * k) for k in range(num_poses)])
    speed = 5.0 + 0.005 * np.arange(num_poses)
    x = 664_000.0 + np.cumsum(speed * np.cos(heading) * 0.025)
    y = 3_997_000.0 + np.cumsum(speed * np.sin(heading) * 0.025)
    ego_tokens = _tokens(log_name, "ego_pose", num_poses)
    ego_pose = {
        "token": ego_tokens,
        "timestamp": (T0_US + t).tolist(),
        "x": x.tolist(),
        "y": y.tolist(),
        "z": [600.0] * num_poses,
        "qw": np.cos(heading / 2).tolist(),
        "qx": [0.0] * num_poses,
        "qy": [0.0] * num_poses,
        "qz": np.sin(heading / 2).tolist(),
        "vx": speed.tolist(),
        "vy": (0.1 * np.sin(np.arange(num_poses))).tolist(),
        "vz": [0.0] * num_poses,
        "acceleration_x": [0.1] * num_poses,
        "acceleration_y": (0.2 * np.cos(np.arange(num_poses))).tolist(),
        "acceleration_z": [0.0] * num_poses,
        "angular_rate_x": [0.0] * num_poses,
        "angular_rate_y": [0.0] * num_poses,
        "angular_rate_z": [0.8] * num_poses,
        "epsg": [32611] * num_poses,
        "log_token": [log_token] * num_poses,
    }

    channels = [MERGED_POINT_CLOUD] + ([EXTRA_LIDAR] if extra_lidar else [])
    lidar_tokens = _tokens(log_name, "lidar", len(channels))
    lidar = {
        "token": lidar_tokens,
        "log_token": [log_token] * len(channels),
        "channel": channels,
        "model": ["Pandar64"] * len(channels),
        "translation": [None] * len(channels),  # pickled in real logs; never read
        "rotation": [None] * len(channels),
    }

    scene_tokens = _tokens(log_name, "scene", num_scenes)
    scene_order = list(reversed(range(num_scenes)))  # rows written in reverse time order
    scene = {
        "token": [scene_tokens[s] for s in scene_order],
        "log_token": [log_token] * num_scenes,
        "name": [names[s] for s in scene_order],
        "goal_ego_pose_token": [
            None if s in goal_less_scenes else ego_tokens[2 * ((s + 1) * frames_per_scene - 1) - 1]
            for s in scene_order
        ],
        "roadblock_ids": [
            " ".join(str(10_000 + 100 * s + k) for k in range(1 + s % 3)) for s in scene_order
        ],
    }

    # lidar_pc: merged frames (time order 0..n-1) then extra-lidar rows; written shuffled.
    n_extra = n // 2 if extra_lidar else 0
    pc_tokens = _tokens(log_name, "lidar_pc", n + n_extra)
    merged, extra = pc_tokens[:n], pc_tokens[n:]
    m_next, m_prev = _chain(merged)
    e_next, e_prev = _chain(extra)
    pc_rows = {
        "token": merged + extra,
        "next_token": m_next + e_next,
        "prev_token": m_prev + e_prev,
        "ego_pose_token": [ego_tokens[2 * i] for i in range(n)]
        + [ego_tokens[4 * i + 1] for i in range(n_extra)],
        "lidar_token": [lidar_tokens[0]] * n + [lidar_tokens[-1]] * n_extra,
        "scene_token": [scene_tokens[i // frames_per_scene] for i in range(n)]
        + [scene_tokens[(2 * i) // frames_per_scene] for i in range(n_extra)],
        "filename": [f"{log_name}/{MERGED_POINT_CLOUD}/{i:06d}.pcd" for i in range(n)]
        + [f"{log_name}/{EXTRA_LIDAR}/{i:06d}.pcd" for i in range(n_extra)],
        "timestamp": [T0_US + FRAME_US * i for i in range(n)]
        + [T0_US + 2 * FRAME_US * i + 1 for i in range(n_extra)],
    }
    perm = rng.permutation(n + n_extra)
    lidar_pc = {c: [v[k] for k in perm] for c, v in pc_rows.items()}

    cat_tokens = _tokens(log_name, "category", len(CATEGORY_NAMES))
    category = {
        "token": cat_tokens,
        "name": list(CATEGORY_NAMES),
        "description": [f"{c} objects" for c in CATEGORY_NAMES],
    }
    track_cat = [CATEGORY_NAMES[k % len(CATEGORY_NAMES)] for k in range(num_tracks)]
    track_tokens = _tokens(log_name, "track", num_tracks)
    track = {
        "token": track_tokens,
        "category_token": [cat_tokens[CATEGORY_NAMES.index(c)] for c in track_cat],
        "width": [BOX_SIZE[c][0] for c in track_cat],
        "length": [BOX_SIZE[c][1] for c in track_cat],
        "height": [BOX_SIZE[c][2] for c in track_cat],
    }

    # Boxes, track-major: track k is seen in frames 1+3k .. n-1-2k (frame 0 has no box), plus
    # one box of track 0 on every extra-lidar lidar_pc (to be ignored by readers).
    box_rows: list[tuple] = []
    groups: list[tuple[int, int]] = []  # box rows of one track on the merged lidar
    for k in range(num_tracks):
        start = len(box_rows)
        frames = range(1 + 3 * k, max(1 + 3 * k, n - 2 * k))
        w, length, h = BOX_SIZE[track_cat[k]]
        for i in frames:
            ex, ey = x[2 * i], y[2 * i]
            yaw = wrap_angle(heading[2 * i] + 0.3 * k)
            box_rows.append(
                (merged[i], track_tokens[k], ex + 8.0 + 3.0 * k, ey - 2.0 + k, yaw, w, length, h)
                + (1.0 + 0.1 * k, -0.5 + 0.05 * i)
            )
        groups.append((start, len(box_rows)))
    for i in range(n_extra):
        box_rows.append((extra[i], track_tokens[0], 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0))
    nb = len(box_rows)
    box_tokens = _tokens(log_name, "lidar_box", nb)
    cols = list(zip(*box_rows, strict=True)) if box_rows else [[]] * 10
    lidar_box = {
        "token": box_tokens,
        "lidar_pc_token": list(cols[0]),
        "track_token": list(cols[1]),
        "next_token": [None] * nb,
        "prev_token": [None] * nb,
        "x": list(cols[2]),
        "y": list(cols[3]),
        "z": [600.5] * nb,
        "width": list(cols[5]),
        "length": list(cols[6]),
        "height": list(cols[7]),
        "vx": list(cols[8]),
        "vy": list(cols[9]),
        "vz": [0.0] * nb,
        "yaw": list(cols[4]),
        "confidence": [1.0] * nb,
    }
    for start, end in groups:
        nxt, prv = _chain(box_tokens[start:end])
        lidar_box["next_token"][start:end] = nxt
        lidar_box["prev_token"][start:end] = prv

    tag_rows = [(merged[i], typ) for i in sorted(tags) for typ in tags[i]]
    tag_rows += [(extra[i], "on_pickup_dropoff") for i in range(0, n_extra, 5)]
    scenario_tag = {
        "token": _tokens(log_name, "scenario_tag", len(tag_rows)),
        "lidar_pc_token": [r[0] for r in tag_rows],
        "type": [r[1] for r in tag_rows],
        "agent_track_token": [
            track_tokens[0] if r[1] == "following_lane_with_lead" and num_tracks else None
            for r in tag_rows
        ],
    }

    # Traffic lights: per frame, connectors 5000+j written in descending id order.
    light_rows = [
        (merged[i], 5000 + j, TRAFFIC_LIGHT_STATUS_NAMES[(i + j) % 4])
        for i in range(n)
        for j in reversed(range(lights_per_frame))
    ]
    light_rows += [(extra[i], 4000, "red") for i in range(n_extra)]
    traffic_light_status = {
        "token": _tokens(log_name, "traffic_light_status", len(light_rows)),
        "lidar_pc_token": [r[0] for r in light_rows],
        "lane_connector_id": [r[1] for r in light_rows],
        "status": [r[2] for r in light_rows],
    }

    return {
        "log": log,
        "ego_pose": ego_pose,
        "lidar": lidar,
        "lidar_pc": lidar_pc,
        "lidar_box": lidar_box,
        "track": track,
        "category": category,
        "scene": scene,
        "scenario_tag": scenario_tag,
        "traffic_light_status": traffic_light_status,
    }


def frame_rows(tables: Mapping[str, Mapping[str, Sequence]]) -> list[int]:
    """Row numbers of ``tables['lidar_pc']`` that are merged frames, in timestamp order."""
    lidar = tables["lidar"]
    merged = {
        t for t, c in zip(lidar["token"], lidar["channel"], strict=True) if c == MERGED_POINT_CLOUD
    }
    pc = tables["lidar_pc"]
    rows = [r for r, lt in enumerate(pc["lidar_token"]) if lt in merged]
    return sorted(rows, key=lambda r: pc["timestamp"][r])


def write_log(directory: Path, log_name: str = DEFAULT_LOG_NAME, **kwargs: object) -> Path:
    """Write ``make_log_tables(log_name, **kwargs)`` to ``directory/<log_name>.db``."""
    path = Path(directory) / f"{log_name}.db"
    write_log_db(path, make_log_tables(log_name, **kwargs))  # type: ignore[arg-type]
    return path
