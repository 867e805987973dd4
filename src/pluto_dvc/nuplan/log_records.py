"""Typed array records of one whole nuPlan log, as returned by ``log_reader.load_log``.

Conventions: N = number of frames (``MergedPointCloud`` lidar_pc rows ordered by timestamp, 20 Hz),
B = number of boxes, T = number of tracks, S = number of scenes. Tokens are ``'S8'`` arrays (see
``log_schema``: never index them item by item, use ``tokens_hex`` / ``token_list``). Positions are
global UTM metres, angles radians. Per-frame variable-length data is CSR: ``frame_start`` is
``(N+1,) int64`` and frame i owns rows ``frame_start[i]:frame_start[i+1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from pluto_dvc.arrays import STR, check, check_fields, check_offsets, csr_row
from pluto_dvc.nuplan.log_schema import CATEGORY_NAMES, TRAFFIC_LIGHT_STATUS_NAMES


@dataclass
class LogMeta:
    """The ``log`` table row and where the file is.

    log_name: file stem, e.g. ``2021.07.16.20.45.29_veh-35_01095_01486``.
    token: the 8-byte log token. vehicle_name, date, logfile: as stored.
    timestamp: ``log.timestamp`` (int, microseconds). location: the ``map_version`` column, one of
    the four map locations (``locations.LOCATIONS``). path: the .db file.
    """

    log_name: str
    token: bytes
    vehicle_name: str
    date: str
    timestamp: int
    logfile: str
    location: str
    path: Path


@dataclass
class LidarClock:
    """The frames of the log: MergedPointCloud lidar_pc rows in timestamp order.

    token: (N,) 'S8' lidar_pc token (the scenario token of a frame).
    timestamp_us: (N,) int64 lidar_pc timestamp, microseconds.
    scene_index: (N,) int32 row of ``Scenes`` (scenes are ordered by name); -1 = no scene.
    ego_index: (N,) int32 row of ``EgoStates`` for the frame (EgoStates are aligned to the clock,
        so this is ``arange(N)``; kept so that callers index explicitly).
    """

    token: np.ndarray
    timestamp_us: np.ndarray
    scene_index: np.ndarray
    ego_index: np.ndarray

    def __len__(self) -> int:
        return int(self.token.shape[0])

    def validate(self) -> None:
        check_fields(
            self,
            len(self),
            {"token": "S8", "timestamp_us": "int64", "scene_index": "int32", "ego_index": "int32"},
        )
        check(bool(np.all(np.diff(self.timestamp_us) >= 0)), "LidarClock", "timestamps not sorted")


@dataclass
class EgoStates:
    """Ego rear-axle state per frame (row i = frame i), from ``ego_pose`` via ``ego_pose_token``.

    token: (N,) 'S8' ego_pose token.
    x, y: (N,) float64 global UTM position of the rear axle, m.
    heading: (N,) float64 yaw about z from the quaternion (qw, qx, qy, qz), rad in [-pi, pi].
    vx, vy: (N,) float64 velocity in the vehicle frame, m/s.
    ax, ay: (N,) float64 acceleration in the vehicle frame, m/s^2.
    yaw_rate: (N,) float64 ``angular_rate_z``, rad/s.
    """

    token: np.ndarray
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    ax: np.ndarray
    ay: np.ndarray
    yaw_rate: np.ndarray

    def __len__(self) -> int:
        return int(self.token.shape[0])

    def validate(self) -> None:
        floats = [f.name for f in fields(self)[1:]]
        check_fields(self, len(self), {"token": "S8", **dict.fromkeys(floats, "float64")})


class _RowsPerFrame:
    """Rows grouped by frame through ``frame_start`` (N+1,) offsets (CSR)."""

    frame_start: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frame_start.shape[0]) - 1

    def rows(self, frame: int) -> slice:
        """The rows of frame ``frame``."""
        return slice(int(self.frame_start[frame]), int(self.frame_start[frame + 1]))


@dataclass
class TrackedObjects(_RowsPerFrame):
    """Detected boxes of every frame, flattened and sorted by frame (CSR over frames).

    frame_start: (N+1,) int64; frame i owns rows frame_start[i]:frame_start[i+1].
    track_tokens: (T,) 'S8' track tokens, in ``track`` table order.
    track_index: (B,) int32 row of ``track_tokens``: the object id across frames.
    category: (B,) int8 index into ``log_schema.CATEGORY_NAMES`` (from the box's track).
    x, y: (B,) float64 global box centre, m. heading: (B,) float64 global yaw, rad.
    width, length, height: (B,) float64 box size, m.
    vx, vy: (B,) float64 global velocity, m/s.
    Within a frame, rows keep their ``lidar_box`` table order.
    """

    frame_start: np.ndarray
    track_tokens: np.ndarray
    track_index: np.ndarray
    category: np.ndarray
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    width: np.ndarray
    length: np.ndarray
    height: np.ndarray
    vx: np.ndarray
    vy: np.ndarray

    _PER_BOX = (
        "track_index",
        "category",
        "x",
        "y",
        "heading",
        "width",
        "length",
        "height",
        "vx",
        "vy",
    )

    def __len__(self) -> int:
        return int(self.track_index.shape[0])

    def validate(self) -> None:
        per_box = {"track_index": "int32", "category": "int8"}
        check_fields(self, len(self), per_box | dict.fromkeys(self._PER_BOX[2:], "float64"))
        check_offsets("TrackedObjects", "frame_start", self.frame_start, self.num_frames, len(self))
        check_fields(self, len(self.track_tokens), {"track_tokens": "S8"})
        if len(self):
            check(
                self.track_index.min() >= 0 and self.track_index.max() < len(self.track_tokens),
                "TrackedObjects",
                "track_index out of range",
            )
            check(
                self.category.min() >= 0 and self.category.max() < len(CATEGORY_NAMES),
                "TrackedObjects",
                "category code out of range",
            )


@dataclass
class TrafficLights(_RowsPerFrame):
    """Traffic-light status per frame (CSR over frames).

    frame_start: (N+1,) int64. lane_connector_id: (L,) int64 ``lane_connectors.fid`` of the map.
    status: (L,) int8 index into ``log_schema.TRAFFIC_LIGHT_STATUS_NAMES`` (green, yellow, red,
    unknown). Within a frame, rows are sorted by lane_connector_id.
    """

    frame_start: np.ndarray
    lane_connector_id: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return int(self.lane_connector_id.shape[0])

    def validate(self) -> None:
        check_fields(self, len(self), {"lane_connector_id": "int64", "status": "int8"})
        check_offsets("TrafficLights", "frame_start", self.frame_start, self.num_frames, len(self))
        if len(self):
            check(
                self.status.min() >= 0 and self.status.max() < len(TRAFFIC_LIGHT_STATUS_NAMES),
                "TrafficLights",
                "status code out of range",
            )


@dataclass
class ScenarioTags:
    """``scenario_tag`` rows of the log's frames, sorted by (frame_index, type).

    frame_index: (K,) int32 frame of the tag. type: (K,) str (numpy ``U``) scenario type.
    """

    frame_index: np.ndarray
    type: np.ndarray

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def validate(self) -> None:
        check_fields(self, len(self), {"frame_index": "int32", "type": STR})


@dataclass
class Scenes:
    """Scenes of the log, **ordered by name** (the devkit's order).

    token: (S,) 'S8'. name: (S,) str (numpy ``U``).
    goal_x, goal_y, goal_heading: (S,) float64 mission goal (rear axle, global UTM m / rad) from
        ``goal_ego_pose_token``; NaN when the scene has no goal.
    roadblock_start: (S+1,) int64 CSR offsets; scene s's route is
        ``roadblock_ids[roadblock_start[s]:roadblock_start[s+1]]``.
    roadblock_ids: (R,) int64 roadblock (lane group) ids from the space-separated column.
    """

    token: np.ndarray
    name: np.ndarray
    goal_x: np.ndarray
    goal_y: np.ndarray
    goal_heading: np.ndarray
    roadblock_start: np.ndarray
    roadblock_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.token.shape[0])

    def roadblocks(self, scene: int) -> np.ndarray:
        """(r,) int64 route roadblock ids of scene ``scene``."""
        return csr_row(self.roadblock_start, self.roadblock_ids, scene)

    def validate(self) -> None:
        goal = dict.fromkeys(("goal_x", "goal_y", "goal_heading"), "float64")
        check_fields(self, len(self), {"token": "S8", "name": STR, **goal})
        check_offsets(
            "Scenes", "roadblock_start", self.roadblock_start, len(self), len(self.roadblock_ids)
        )
        check_fields(self, len(self.roadblock_ids), {"roadblock_ids": "int64"})


@dataclass
class LogArrays:
    """Everything the pipeline reads from one log, loaded once and sliced per scenario."""

    meta: LogMeta
    clock: LidarClock
    ego: EgoStates
    tracks: TrackedObjects
    traffic_lights: TrafficLights
    tags: ScenarioTags
    scenes: Scenes

    @property
    def num_frames(self) -> int:
        return len(self.clock)

    @property
    def num_boxes(self) -> int:
        return len(self.tracks)

    @property
    def num_tracks(self) -> int:
        return int(self.tracks.track_tokens.shape[0])

    @property
    def num_scenes(self) -> int:
        return len(self.scenes)

    def validate(self) -> None:
        """Validate every record and that they agree on N and on index ranges."""
        for record in (
            self.clock,
            self.ego,
            self.tracks,
            self.traffic_lights,
            self.tags,
            self.scenes,
        ):
            record.validate()
        n = self.num_frames
        check(len(self.ego) == n, "LogArrays", f"{len(self.ego)} ego states for {n} frames")
        check(self.tracks.num_frames == n, "LogArrays", "tracks.frame_start does not match N")
        check(self.traffic_lights.num_frames == n, "LogArrays", "traffic_lights CSR != N")
        if n:
            check(
                self.clock.ego_index.min() >= 0 and self.clock.ego_index.max() < len(self.ego),
                "LogArrays",
                "clock.ego_index out of range",
            )
            check(
                self.clock.scene_index.min() >= -1
                and self.clock.scene_index.max() < len(self.scenes),
                "LogArrays",
                "clock.scene_index out of range",
            )
        if len(self.tags):
            check(
                self.tags.frame_index.min() >= 0 and self.tags.frame_index.max() < n,
                "LogArrays",
                "tags.frame_index out of range",
            )
