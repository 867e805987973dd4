"""A simulated log as nuPlan tables: the columns :func:`write_log_db` takes, with nuPlan semantics.

- ``lidar_pc`` is the 20 Hz clock (50,000 us apart) of the single ``MergedPointCloud`` lidar,
  linked by next/prev tokens (NULL at the ends); one ``ego_pose`` (rear axle) per lidar_pc.
- ``lidar_box``: one row per object per frame (global box centre, yaw, global velocity) with
  small detection noise; next/prev tokens link the boxes of one track.
- ``scene``: 20 s each, named ``scene-0000``... so that name order is time order; ``roadblock_ids``
  is the ego's route (roadblocks = lane groups and lane-group connectors) from the scene start,
  ``goal_ego_pose_token`` a pose the ego really reaches on it ``GOAL_AHEAD_S`` later (NULL for the
  last scene, whose goal would lie past the log's end).
- ``lidar`` ``translation`` / ``rotation`` hold what real logs hold: the pickled bytes of a 3-list
  and of a 4-list quaternion (w, x, y, z) (``sensor_extrinsics_blobs``: the identity mount, lidar
  at the rear axle), so the devkit's ``get_lidar_to_ego_transform`` works on synthetic logs.
"""

from __future__ import annotations

import calendar
from datetime import datetime

import numpy as np

from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.log_schema import CATEGORY_NAMES, MERGED_POINT_CLOUD, make_tokens, token_list
from pluto_dvc.nuplan.log_writer import sensor_extrinsics_blobs
from pluto_dvc.synthetic.network import RoadNetwork
from pluto_dvc.synthetic.simulation import KIND_CATEGORY, SimResult

FRAME_US = 50_000
SCENE_S = 20.0
GOAL_AHEAD_S = 20.0
POSITION_NOISE_M = 0.03
YAW_NOISE_RAD = 0.005
SENSOR_TRANSLATION_BLOB, SENSOR_ROTATION_BLOB = sensor_extrinsics_blobs()


def _tokens(log_name: str, table: str, count: int) -> list[bytes]:
    return token_list(make_tokens(log_name, table, count))


def _link(tokens: np.ndarray, same_chain: np.ndarray) -> tuple[list, list]:
    """next / prev tokens along rows; ``same_chain[k]`` says rows k and k+1 are linked."""
    nxt = [None] * len(tokens)
    prv = [None] * len(tokens)
    for k in np.flatnonzero(same_chain):
        nxt[k] = tokens[k + 1]
        prv[k + 1] = tokens[k]
    return nxt, prv


def _roadblock_of(network: RoadNetwork, fid: int) -> int:
    if fid in network.lanes:
        return network.lanes[fid].lane_group_fid
    return network.connectors[fid].lane_group_connector_fid


def build_log_tables(
    result: SimResult,
    tags: tuple[np.ndarray, np.ndarray],
    network: RoadNetwork,
    log_name: str,
    vehicle: str,
    start: datetime,
    seed: int,
) -> dict[str, dict[str, list | np.ndarray]]:
    """All nuPlan tables of one log, ready for :func:`write_log_db`."""
    rng = np.random.default_rng(seed)
    n = result.num_frames
    loc = LOCATIONS[network.location]
    t0 = calendar.timegm(start.timetuple()) * 1_000_000
    stamps = t0 + FRAME_US * np.arange(n, dtype=np.int64)
    log_token = _tokens(log_name, "log", 1)[0]
    lidar_token = _tokens(log_name, "lidar", 1)[0]
    pc = _tokens(log_name, "lidar_pc", n)
    ego_tok = _tokens(log_name, "ego_pose", n)

    # scenes
    frames_per_scene = int(round(SCENE_S * 1e6 / FRAME_US))
    num_scenes = max(1, int(np.ceil(n / frames_per_scene)))
    scene_tok = _tokens(log_name, "scene", num_scenes)
    scene_of_frame = np.minimum(np.arange(n) // frames_per_scene, num_scenes - 1)
    goal_ahead = int(round(GOAL_AHEAD_S * 1e6 / FRAME_US))
    goals, roadblocks = [], []
    for s in range(num_scenes):
        first = s * frames_per_scene
        goal_frame = min(first + frames_per_scene + goal_ahead, n - 1)
        last_scene = s == num_scenes - 1
        goals.append(None if last_scene else ego_tok[goal_frame])
        start_idx = int(result.route_start[first])
        end_idx = int(result.route_start[goal_frame]) + 3
        ids: list[int] = []
        for fid in result.route_elements[start_idx:end_idx]:
            rb = _roadblock_of(network, int(fid))
            if not ids or ids[-1] != rb:
                ids.append(rb)
        roadblocks.append(" ".join(str(r) for r in ids))

    x, y, h = result.ego[:, 0], result.ego[:, 1], result.ego[:, 2]
    zeros = np.zeros(n)
    nxt, prv = _link(pc, np.ones(n - 1, bool))
    tables: dict[str, dict] = {
        "log": {
            "token": [log_token],
            "vehicle_name": [vehicle],
            "date": [start.strftime("%Y-%m-%d")],
            "timestamp": [int(t0)],
            "logfile": [log_name],
            "location": [loc.name],
            "map_version": [loc.name],
        },
        "lidar": {
            "token": [lidar_token],
            "log_token": [log_token],
            "channel": [MERGED_POINT_CLOUD],
            "model": ["synthetic-merged"],
            "translation": [SENSOR_TRANSLATION_BLOB],
            "rotation": [SENSOR_ROTATION_BLOB],
        },
        "ego_pose": {
            "token": ego_tok,
            "timestamp": stamps,
            "x": x,
            "y": y,
            "z": zeros,
            "qw": np.cos(h / 2),
            "qx": zeros,
            "qy": zeros,
            "qz": np.sin(h / 2),
            "vx": result.ego[:, 3],
            "vy": result.ego[:, 4],
            "vz": zeros,
            "acceleration_x": result.ego[:, 5],
            "acceleration_y": result.ego[:, 6],
            "acceleration_z": zeros,
            "angular_rate_x": zeros,
            "angular_rate_y": zeros,
            "angular_rate_z": result.ego[:, 7],
            "epsg": np.full(n, loc.epsg),
            "log_token": [log_token] * n,
        },
        "lidar_pc": {
            "token": pc,
            "next_token": nxt,
            "prev_token": prv,
            "ego_pose_token": ego_tok,
            "lidar_token": [lidar_token] * n,
            "scene_token": [scene_tok[s] for s in scene_of_frame],
            "filename": [f"{log_name}/{MERGED_POINT_CLOUD}/{t.hex()}.pcd" for t in pc],
            "timestamp": stamps,
        },
        "scene": {
            "token": scene_tok,
            "log_token": [log_token] * num_scenes,
            "name": [f"scene-{s:04d}" for s in range(num_scenes)],
            "goal_ego_pose_token": goals,
            "roadblock_ids": roadblocks,
        },
    }
    tables.update(_object_tables(result, log_name, pc, rng))
    tables["scenario_tag"] = _tag_table(result, tags, log_name, pc, tables["track"]["token"])
    tables["traffic_light_status"] = _light_table(result, log_name, pc)
    return tables


def _object_tables(result: SimResult, log_name: str, pc: list, rng) -> dict[str, dict]:
    cat_tok = _tokens(log_name, "category", len(CATEGORY_NAMES))
    k = len(result.track_kind)
    track_tok = _tokens(log_name, "track", k)
    cat_index = {name: i for i, name in enumerate(CATEGORY_NAMES)}
    track_cat = [cat_tok[cat_index[KIND_CATEGORY[int(kind)]]] for kind in result.track_kind]

    order = np.lexsort((result.box_frame, result.box_track))  # by track, then frame
    b = len(order)
    box_tok = _tokens(log_name, "lidar_box", b)
    tr, fr = result.box_track[order], result.box_frame[order]
    same = (tr[1:] == tr[:-1]) & (fr[1:] == fr[:-1] + 1)
    nxt, prv = _link(box_tok, same)
    st = result.box_state[order]
    noise_xy = rng.normal(0.0, POSITION_NOISE_M, (b, 2))
    noise_yaw = rng.normal(0.0, YAW_NOISE_RAD, b)
    return {
        "category": {
            "token": cat_tok,
            "name": list(CATEGORY_NAMES),
            "description": [f"synthetic {name}" for name in CATEGORY_NAMES],
        },
        "track": {
            "token": track_tok,
            "category_token": track_cat,
            "width": result.track_size[:, 0],
            "length": result.track_size[:, 1],
            "height": result.track_size[:, 2],
        },
        "lidar_box": {
            "token": box_tok,
            "lidar_pc_token": [pc[f] for f in fr],
            "track_token": [track_tok[t] for t in tr],
            "next_token": nxt,
            "prev_token": prv,
            "x": st[:, 0] + noise_xy[:, 0],
            "y": st[:, 1] + noise_xy[:, 1],
            "z": st[:, 5] / 2,
            "width": st[:, 3],
            "length": st[:, 4],
            "height": st[:, 5],
            "vx": st[:, 6],
            "vy": st[:, 7],
            "vz": np.zeros(b),
            "yaw": (st[:, 2] + noise_yaw + np.pi) % (2 * np.pi) - np.pi,
            "confidence": np.ones(b),
        },
    }


def _tag_table(result: SimResult, tags, log_name: str, pc: list, track_tok: list) -> dict:
    frames, types = tags
    tokens = _tokens(log_name, "scenario_tag", len(frames))
    lead_types = ("lead", "behind_")
    agents = []
    for f, kind in zip(frames, types, strict=True):
        lead = int(result.ego_leader[f])
        with_agent = lead >= 0 and any(w in kind for w in lead_types) and "without" not in kind
        agents.append(track_tok[lead] if with_agent else None)
    return {
        "token": tokens,
        "lidar_pc_token": [pc[f] for f in frames],
        "type": list(types),
        "agent_track_token": agents,
    }


def _light_table(result: SimResult, log_name: str, pc: list) -> dict:
    m = len(result.light_frame)
    return {
        "token": _tokens(log_name, "traffic_light_status", m),
        "lidar_pc_token": [pc[f] for f in result.light_frame],
        "lane_connector_id": result.light_connector,
        "status": list(result.light_status),
    }


def write_synthetic_log(job, network: RoadNetwork, elements=None):
    """Simulate ``job`` (a :class:`~pluto_dvc.synthetic.dataset.LogJob`) and write its .db."""
    from pluto_dvc.nuplan.log_writer import write_log_db
    from pluto_dvc.synthetic.dataset import LogStats
    from pluto_dvc.synthetic.simulation import SimConfig, simulate
    from pluto_dvc.synthetic.tagger import frame_tags

    p = job.params
    config = SimConfig(
        duration_s=p.minutes_per_log * 60.0,
        num_vehicles=p.num_vehicles,
        num_pedestrians=p.num_pedestrians,
        num_cyclists=p.num_cyclists,
        seed=job.seed,
    )
    result = simulate(network, config, elements)
    tags = frame_tags(result, network)
    vehicle = job.log_name.split("_")[1]
    tables = build_log_tables(result, tags, network, job.log_name, vehicle, job.start, job.seed)
    write_log_db(job.path, tables)
    types, counts = np.unique(tags[1], return_counts=True)
    return LogStats(
        log_name=job.log_name,
        location=job.location,
        num_frames=result.num_frames,
        num_boxes=len(result.box_frame),
        num_tracks=len(result.track_kind),
        num_scenes=len(tables["scene"]["token"]),
        tags={str(t): int(c) for t, c in zip(types, counts, strict=True)},
        seconds=0.0,
    )
