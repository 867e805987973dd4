"""Narrow reads of one log for scenario selection: the clock, scenes, tags and (optionally) ego.

Selection touches thousands of logs, so it never loads boxes or traffic lights: a handful of
queries fill the reader's own record types (``LidarClock``, ``Scenes``, ``ScenarioTags``,
plus a small ``EgoMotion``). nuPlan's rules come from ``log_reader`` (the clock: MergedPointCloud
frames in timestamp order; the quaternion heading; the route's roadblock ids; the read-only open);
scenes are ordered by name and tags of other lidars ignored, as ``load_log`` does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.log_reader import (
    TokenIndex,
    clock_rows,
    heading_of_quaternion,
    open_log,
    parse_roadblock_ids,
    read_log_meta,
)
from pluto_dvc.nuplan.log_records import LidarClock, LogMeta, ScenarioTags, Scenes
from pluto_dvc.nuplan.log_schema import MERGED_POINT_CLOUD, TOKEN_BYTES, token_keys, tokens_hex

_FIX = (
    "re-download the log (real nuPlan) or regenerate the synthetic dataset (`dvc repro synthesize`)"
)


@dataclass
class EgoMotion:
    """Ego rear-axle motion per frame (row i = frame i), the part of ``EgoStates`` selection uses.

    x, y: (N,) float64 global UTM position, m. heading: (N,) float64 yaw, rad.
    vx, vy: (N,) float64 velocity in the vehicle frame, m/s.
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    vx: np.ndarray
    vy: np.ndarray

    @property
    def speed(self) -> np.ndarray:
        """(N,) float64 rear-axle speed, m/s."""
        return np.hypot(self.vx, self.vy)


@dataclass
class SelectionLog:
    """What selection reads from one log. ``ego`` is None unless asked for.

    ``goal_valid``: (S,) bool, the scene's ``goal_ego_pose_token`` names an existing ego pose.
    ``clock_keys``: (N,) uint64 frame tokens as integers (``token_keys(clock.token)``).
    """

    meta: LogMeta
    clock: LidarClock
    scenes: Scenes
    tags: ScenarioTags
    goal_valid: np.ndarray
    clock_keys: np.ndarray
    ego: EgoMotion | None = None

    @property
    def num_frames(self) -> int:
        return len(self.clock)


def _fail(path: Path, message: str) -> DataError:
    return DataError(f"nuPlan log {path}: {message}; {_FIX}.")


def _columns(con: sqlite3.Connection, sql: str, width: int) -> list[tuple]:
    rows = con.execute(sql).fetchall()
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _tokens(path: Path, what: str, values: Sequence) -> np.ndarray:
    """(M,) 'S8' from a NOT NULL token column; DataError on anything else."""
    if set(map(type, values)) <= {bytes} and set(map(len, values)) <= {TOKEN_BYTES}:
        return np.frombuffer(b"".join(values), dtype="S8").copy()
    bad = next(v for v in values if type(v) is not bytes or len(v) != TOKEN_BYTES)
    raise _fail(path, f"{what} holds {bad!r}; nuPlan tokens are 8-byte BLOBs")


def _floats(path: Path, what: str, values: Sequence) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"{what} must hold numbers ({exc})") from exc


def read_selection_log(
    path: str | Path, with_ego: bool = False, meta: LogMeta | None = None
) -> SelectionLog:
    """Read the clock, scenes (with goal poses), tags and, if asked, the ego motion of a log.

    ``meta`` is the log's ``read_log_meta`` result when the caller already has it.
    """
    path = Path(path)
    if meta is None:
        meta = read_log_meta(path)  # checks the file and the log row
    with open_log(path) as con:
        try:
            return _Reader(con, path).read(meta, with_ego)
        except sqlite3.OperationalError as exc:
            raise _fail(path, f"is not in the nuPlan log format ({exc})") from exc


class _Reader:
    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self.con, self.path = con, path

    def read(self, meta: LogMeta, with_ego: bool) -> SelectionLog:
        self.read_frames()
        scenes, goal_valid = self.read_scenes()
        clock = LidarClock(
            token=self.frame_token,
            timestamp_us=self.frame_timestamp,
            scene_index=self.scene_index(scenes),
            ego_index=np.arange(len(self.frame_token), dtype=np.int32),
        )
        log = SelectionLog(
            meta=meta,
            clock=clock,
            scenes=scenes,
            tags=self.read_tags(),
            goal_valid=goal_valid,
            clock_keys=token_keys(self.frame_token),
            ego=self.read_ego() if with_ego else None,
        )
        return log

    def read_frames(self) -> None:
        tokens, channels = _columns(self.con, "SELECT token, channel FROM lidar", 2)
        merged = [t for t, c in zip(tokens, channels, strict=True) if c == MERGED_POINT_CLOUD]
        if not merged:
            raise _fail(self.path, f"no lidar with channel {MERGED_POINT_CLOUD!r}")
        merged_keys = token_keys(_tokens(self.path, "lidar.token", merged))
        sql = "SELECT token, lidar_token, scene_token, ego_pose_token, timestamp FROM lidar_pc"
        tok, lidar, scene, ego, ts = _columns(self.con, sql, 5)
        pc_tokens = _tokens(self.path, "lidar_pc.token", tok)
        is_merged = np.isin(
            token_keys(_tokens(self.path, "lidar_pc.lidar_token", lidar)), merged_keys
        )
        timestamps = np.array(ts, dtype=np.int64)
        rows = clock_rows(timestamps, is_merged)
        if len(rows) == 0:
            raise _fail(self.path, f"the {MERGED_POINT_CLOUD!r} lidar has no lidar_pc rows")
        self.pc_index = TokenIndex(pc_tokens)
        self.pc_frame = np.full(len(pc_tokens), -1, dtype=np.int64)
        self.pc_frame[rows] = np.arange(len(rows))
        self.frame_token = pc_tokens[rows]
        self.frame_timestamp = timestamps[rows]
        self.frame_scene = [scene[r] for r in rows]
        self.frame_ego = _tokens(self.path, "lidar_pc.ego_pose_token", [ego[r] for r in rows])

    def read_scenes(self) -> tuple[Scenes, np.ndarray]:
        sql = (
            "SELECT s.token, s.name, s.roadblock_ids, e.token, e.x, e.y, e.qw, e.qx, e.qy, e.qz "
            "FROM scene AS s LEFT JOIN ego_pose AS e ON e.token = s.goal_ego_pose_token"
        )
        tok, name, route, goal, x, y, qw, qx, qy, qz = _columns(self.con, sql, 10)
        names = np.array(["" if v is None else str(v) for v in name], dtype=str)
        order = np.argsort(names, kind="stable")
        valid = np.array([g is not None for g in goal], dtype=bool)[order]

        def goal_column(values: Sequence) -> np.ndarray:
            filled = [np.nan if v is None else v for v in values]
            return _floats(self.path, "ego_pose (goal)", filled)[order]

        gx, gy = goal_column(x), goal_column(y)
        heading = heading_of_quaternion(*(goal_column(q) for q in (qw, qx, qy, qz)))
        try:
            roadblock_start, ids = parse_roadblock_ids([route[i] for i in order])
        except ValueError as exc:
            raise _fail(
                self.path, f"scene.roadblock_ids must be space-separated integer ids ({exc})"
            ) from exc
        scenes = Scenes(
            token=_tokens(self.path, "scene.token", tok)[order],
            name=names[order],
            goal_x=np.where(valid, gx, np.nan),
            goal_y=np.where(valid, gy, np.nan),
            goal_heading=np.where(valid, heading, np.nan),
            roadblock_start=roadblock_start,
            roadblock_ids=ids,
        )
        return scenes, valid

    def scene_index(self, scenes: Scenes) -> np.ndarray:
        """(N,) int32 scene row of each frame (-1 = no scene); DataError on a dangling token."""
        index = np.full(len(self.frame_token), -1, dtype=np.int32)
        has = np.array([s is not None for s in self.frame_scene], dtype=bool)
        if not has.any():
            return index
        tokens = _tokens(self.path, "lidar_pc.scene_token", [s for s in self.frame_scene if s])
        rows = TokenIndex(scenes.token).find(tokens)
        if (rows < 0).any():
            raise _fail(self.path, "lidar_pc.scene_token names a scene that does not exist")
        index[has] = rows
        return index

    def read_tags(self) -> ScenarioTags:
        pc, types = _columns(self.con, "SELECT lidar_pc_token, type FROM scenario_tag", 2)
        tokens = _tokens(self.path, "scenario_tag.lidar_pc_token", pc)
        rows = self.pc_index.find(tokens)
        if (rows < 0).any():
            bad = tokens_hex(tokens[rows < 0][:1])[0]
            raise _fail(self.path, f"scenario_tag.lidar_pc_token {bad} is not a lidar_pc")
        frame = self.pc_frame[rows]
        keep = np.flatnonzero(frame >= 0)
        frame_index = frame[keep].astype(np.int32)
        type_array = np.array([str(types[k]) for k in keep], dtype=str)
        if len(type_array) == 0:
            type_array = np.zeros(0, dtype="U1")
        order = np.lexsort((type_array, frame_index))
        return ScenarioTags(frame_index=frame_index[order], type=type_array[order])

    def read_ego(self) -> EgoMotion:
        sql = (
            "SELECT token, x, y, qw, qx, qy, qz, vx, vy FROM ego_pose "
            "WHERE token IN (SELECT ego_pose_token FROM lidar_pc)"
        )
        cols = _columns(self.con, sql, 9)
        tokens = _tokens(self.path, "ego_pose.token", cols[0])
        v = [_floats(self.path, "ego_pose", c) for c in cols[1:]]
        rows = TokenIndex(tokens).find(self.frame_ego)
        if (rows < 0).any():
            raise _fail(self.path, "lidar_pc.ego_pose_token names an ego pose that does not exist")
        x, y, qw, qx, qy, qz, vx, vy = (a[rows] for a in v)
        return EgoMotion(x=x, y=y, heading=heading_of_quaternion(qw, qx, qy, qz), vx=vx, vy=vy)
