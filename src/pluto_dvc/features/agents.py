"""Ego and agent tracks of one scenario, cut from the whole-log arrays.

``LogTimeline`` is built once per log (box -> frame, category recoding, ego arrays); per scenario
``build_agents`` slices the frames of the window, keeps the ``max_agents`` vehicles, pedestrians
and bicycles nearest to the ego centre at the present step (as PLUTO: no distance cut) and writes
them in the ego frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pluto_dvc.features.geometry import rotation, wrap_angle
from pluto_dvc.features.records import AgentFeatures
from pluto_dvc.nuplan.log_records import LogArrays
from pluto_dvc.nuplan.log_schema import CATEGORY_CODES

# nuPlan ego vehicle (Chrysler Pacifica), metres.
EGO_WIDTH = 2.297
EGO_LENGTH = 5.176
EGO_WHEELBASE = 3.089
EGO_REAR_AXLE_TO_CENTER = 1.461

# log category code -> agent category (records.AGENT_CATEGORIES) / static category, -1 = other
_AGENT_OF = {"vehicle": 1, "pedestrian": 2, "bicycle": 3}
_STATIC_OF = {"czone_sign": 0, "barrier": 1, "traffic_cone": 2, "generic_object": 3}


def _recode(mapping: dict[str, int]) -> np.ndarray:
    table = np.full(len(CATEGORY_CODES), -1, dtype=np.int8)
    for name, code in mapping.items():
        table[CATEGORY_CODES[name]] = code
    return table


AGENT_CODE = _recode(_AGENT_OF)
STATIC_CODE = _recode(_STATIC_OF)


@dataclass
class LogTimeline:
    """Per-log arrays: B boxes, N frames.

    box_frame: (B,) int64 frame of each box. agent_category: (B,) int8 (1 vehicle, 2 pedestrian,
    3 bicycle, -1 other). static_category: (B,) int8 (records.STATIC_CATEGORIES, -1 other).
    ego_xy: (N, 2) float64 rear axle; ego_heading, ego_vx, ego_vy, ego_ax: (N,) float64
    (velocity / acceleration in the vehicle frame).
    """

    log: LogArrays
    box_frame: np.ndarray
    agent_category: np.ndarray
    static_category: np.ndarray
    ego_xy: np.ndarray
    ego_heading: np.ndarray
    ego_vx: np.ndarray
    ego_vy: np.ndarray
    ego_ax: np.ndarray

    @classmethod
    def from_log(cls, log: LogArrays) -> LogTimeline:
        tracks, ego = log.tracks, log.ego
        counts = np.diff(tracks.frame_start)
        return cls(
            log=log,
            box_frame=np.repeat(np.arange(tracks.num_frames, dtype=np.int64), counts),
            agent_category=AGENT_CODE[tracks.category],
            static_category=STATIC_CODE[tracks.category],
            ego_xy=np.stack([ego.x, ego.y], axis=1),
            ego_heading=ego.heading,
            ego_vx=ego.vx,
            ego_vy=ego.vy,
            ego_ax=ego.ax,
        )


def ego_center(rear_axle: np.ndarray, heading: float) -> np.ndarray:
    """(2,) global centre of the ego box from its rear-axle position and heading."""
    return rear_axle + EGO_REAR_AXLE_TO_CENTER * np.array([np.cos(heading), np.sin(heading)])


@dataclass
class Window:
    """The frames of one scenario: ``frames`` (T,) int64 log frames at the sample interval,
    ``present`` the index of the present step in it, ``step`` log frames per sample step."""

    frames: np.ndarray
    present: int
    step: int

    @property
    def present_frame(self) -> int:
        return int(self.frames[self.present])


def build_agents(
    timeline: LogTimeline,
    window: Window,
    origin: np.ndarray,
    angle: float,
    center: np.ndarray,
    max_agents: int,
    slot_of_track: np.ndarray,
) -> tuple[AgentFeatures, np.ndarray]:
    """Ego (row 0) and the ``max_agents`` agents present now that are nearest to the ego centre,
    however far (PLUTO applies no distance cut), in the ego frame, and the (A-1,) int64 track
    index of rows 1.. .

    slot_of_track: (num_tracks,) int64 scratch array filled with -1 (returned filled with -1).
    """
    tracks = timeline.log.tracks
    frames, present, step = window.frames, window.present, window.step
    t_count = len(frames)
    rot = rotation(angle)

    # agents present now, nearest to the ego's centre first (ties by track index)
    now = tracks.rows(window.present_frame)
    cat_now = timeline.agent_category[now]
    rows_now = np.arange(now.start, now.stop)[cat_now > 0]
    dist = np.hypot(tracks.x[rows_now] - center[0], tracks.y[rows_now] - center[1])
    order = np.lexsort((tracks.track_index[rows_now], dist))[:max_agents]
    rows_now = rows_now[order]
    a_count = 1 + len(rows_now)
    slot_of_track[tracks.track_index[rows_now]] = np.arange(1, a_count)

    # every box of the selected tracks in the window, at the sample steps
    lo = int(tracks.frame_start[frames[0]])
    hi = int(tracks.frame_start[frames[-1] + 1])
    rel = timeline.box_frame[lo:hi] - frames[0]
    slot = slot_of_track[tracks.track_index[lo:hi]]
    keep = (rel % step == 0) & (slot > 0)
    rows = lo + np.flatnonzero(keep)
    slot, t = slot[keep], rel[keep] // step
    slot_of_track[tracks.track_index[rows_now]] = -1

    position = np.zeros((a_count, t_count, 2))
    heading = np.zeros((a_count, t_count))
    velocity = np.zeros((a_count, t_count, 2))
    shape = np.zeros((a_count, t_count, 2))
    valid = np.zeros((a_count, t_count), dtype=bool)

    xy = np.stack([tracks.x[rows], tracks.y[rows]], axis=1)
    position[slot, t] = (xy - origin) @ rot
    heading[slot, t] = wrap_angle(tracks.heading[rows] - angle)
    velocity[slot, t] = np.stack([tracks.vx[rows], tracks.vy[rows]], axis=1) @ rot
    shape[slot, t] = np.stack([tracks.width[rows], tracks.length[rows]], axis=1)
    valid[slot, t] = True

    # the ego: rear axle, vehicle-frame velocity rotated by its heading relative to the present
    ego_heading = timeline.ego_heading[frames]
    position[0] = (timeline.ego_xy[frames] - origin) @ rot
    heading[0] = wrap_angle(ego_heading - angle)
    rel_heading = ego_heading - angle
    c, s = np.cos(rel_heading), np.sin(rel_heading)
    vx, vy = timeline.ego_vx[frames], timeline.ego_vy[frames]
    velocity[0] = np.stack([c * vx - s * vy, s * vx + c * vy], axis=1)
    shape[0] = (EGO_WIDTH, EGO_LENGTH)
    valid[0] = True

    category = np.zeros(a_count, dtype=np.int8)
    category[1:] = timeline.agent_category[rows_now]

    future = slice(present + 1, t_count)
    target = np.zeros((a_count, t_count - present - 1, 3))
    target[..., :2] = position[:, future] - position[:, present : present + 1]
    target[..., 2] = wrap_angle(heading[:, future] - heading[:, present : present + 1])
    target *= valid[:, future, None]
    features = AgentFeatures(
        position=(position * valid[..., None]).astype(np.float32),
        heading=(heading * valid).astype(np.float32),
        velocity=(velocity * valid[..., None]).astype(np.float32),
        shape=(shape * valid[..., None]).astype(np.float32),
        category=category,
        valid_mask=valid,
        target=target.astype(np.float32),
    )
    return features, tracks.track_index[rows_now].astype(np.int64)


def clean_ego_future(agents: AgentFeatures, present: int, future_valid: np.ndarray) -> None:
    """Label cleaning in place: the ego row's future steps where ``future_valid`` (F,) is False
    become invalid, their values (and targets) zero like any padding."""
    cut = ~future_valid
    if not cut.any():
        return
    steps = present + 1 + np.flatnonzero(cut)
    agents.valid_mask[0, steps] = False
    for array in (agents.position, agents.heading, agents.velocity, agents.shape):
        array[0, steps] = 0
    agents.target[0, cut] = 0


def current_state(timeline: LogTimeline, window: Window) -> np.ndarray:
    """(7,) float32 x, y, heading (0), longitudinal speed, longitudinal acceleration, steering
    angle, yaw rate: yaw rate from the heading change over the last step, clipped to +-0.95 rad/s;
    steering = atan(yaw_rate * wheelbase / |v|) clipped to +-2 pi / 3; both 0 when |v| < 0.2."""
    f = window.present_frame
    prev = int(window.frames[window.present - 1]) if window.present > 0 else f
    stamps = timeline.log.clock.timestamp_us
    dt = max((int(stamps[f]) - int(stamps[prev])) * 1e-6, 1e-3)
    v = float(timeline.ego_vx[f])
    yaw_rate = 0.0
    steering = 0.0
    if abs(v) >= 0.2 and prev != f:
        dh = float(wrap_angle(timeline.ego_heading[f] - timeline.ego_heading[prev]))
        yaw_rate = float(np.clip(dh / dt, -0.95, 0.95))
        steering = float(
            np.clip(np.arctan(yaw_rate * EGO_WHEELBASE / abs(v)), -2 * np.pi / 3, 2 * np.pi / 3)
        )
    return np.array([0.0, 0.0, 0.0, v, timeline.ego_ax[f], steering, yaw_rate], dtype=np.float32)
