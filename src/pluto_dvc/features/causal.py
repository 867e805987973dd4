"""Causal facts of a scenario for the contrastive augmentation (spec section 4).

The *ego line* is the reference line the ego's future follows best: the smallest lateral offset
of the last 1 s future point (``future_projection``); with no reference line, a straight line
along the ego heading. On it:

- leading agent: the nearest vehicle / bicycle ahead whose present centre projects on the line
  with ``|lateral| <= (ego width + agent width) / 2`` and whose heading is within pi/2 of the line;
- red light: the first lane connector that the line enters ahead of the ego within
  ``RED_LIGHT_LOOKAHEAD_M``; ``red_light_polygon_index`` is its map row when its light is red; the
  ego *waits* at it when additionally its speed is below ``WAITING_SPEED``;
- free path: the line's points before the first obstacle (the leading agent's rear, a static
  object in the corridor, or the red connector's start);
- interaction: agents whose valid future positions come within ``INTERACTION_M`` of any ego
  future position (paths, not times), plus the leading agent.
"""

from __future__ import annotations

import numpy as np

from pluto_dvc.features.agents import EGO_WIDTH
from pluto_dvc.features.geometry import project_onto_polylines, wrap_angle
from pluto_dvc.features.map_index import CONNECTOR, FeatureMap
from pluto_dvc.features.records import TL_RED, AgentFeatures, CausalInfo, ReferenceLines
from pluto_dvc.features.reference_lines import STEP_M, LinePath

RED_LIGHT_LOOKAHEAD_M = 30.0
WAITING_SPEED = 2.0  # m/s
INTERACTION_M = 3.0
_LEADING_CATEGORIES = (1, 3)  # vehicle, bicycle


def ego_line_index(lines: ReferenceLines) -> int:
    """Row of the line the ego future follows best (-1 when there is none)."""
    if lines.position.shape[0] == 0:
        return -1
    lateral = np.abs(lines.future_projection[:, -1, 1])
    return int(np.argmin(lateral))


def build_causal(
    agents: AgentFeatures,
    present: int,
    lines: ReferenceLines | None,
    paths: list[LinePath],
    fmap: FeatureMap,
    map_rows: np.ndarray,
    map_tl_status: np.ndarray,
    static_center: np.ndarray,
    static_width: np.ndarray,
    static_length: np.ndarray,
    line_points: int,
) -> CausalInfo:
    """map_rows / map_tl_status: the map-index rows of the map features and their status, in
    feature order; static_center / static_width / static_length: ego-frame static objects (all
    within the radius, not only the kept ones)."""
    k = ego_line_index(lines) if lines is not None else -1
    if k >= 0:
        line = lines.position[k].astype(np.float64)
        line_valid = lines.valid_mask[k]
        orient = lines.orientation[k]
    else:  # straight ahead along the ego heading
        line = np.stack([STEP_M * np.arange(line_points), np.zeros(line_points)], axis=1)
        line_valid = np.ones(line_points, dtype=bool)
        orient = np.zeros(line_points)
    arc = STEP_M * np.arange(len(line))
    end = arc[line_valid].max() if line_valid.any() else 0.0
    obstacle_s = np.inf

    # leading agent
    a = agents.position.shape[0]
    leading = -1
    if a > 1:
        pos = agents.position[1:, present].astype(np.float64)
        s, d = project_onto_polylines(pos, line[None], line_valid[None])
        s, d = s[0], d[0]
        idx = np.clip(np.round(s / STEP_M).astype(int), 0, len(line) - 1)
        heading_ok = np.abs(wrap_angle(agents.heading[1:, present] - orient[idx])) < np.pi / 2
        corridor = np.abs(d) <= (EGO_WIDTH + agents.shape[1:, present, 0]) / 2
        candidate = (
            agents.valid_mask[1:, present]
            & np.isin(agents.category[1:], _LEADING_CATEGORIES)
            & heading_ok
            & corridor
            & (s > 0.0)
            & (s < end)
        )
        if candidate.any():
            best = np.flatnonzero(candidate)[np.argmin(s[candidate])]
            leading = int(best) + 1
            obstacle_s = min(obstacle_s, s[best] - agents.shape[leading, present, 1] / 2)

    # static objects in the corridor
    if len(static_center):
        s, d = project_onto_polylines(static_center, line[None], line_valid[None])
        on_line = (np.abs(d[0]) <= (EGO_WIDTH + static_width) / 2) & (s[0] > 0.0) & (s[0] < end)
        if on_line.any():
            rear = s[0] - static_length / 2
            obstacle_s = min(obstacle_s, float(rear[on_line].min()))

    # red light: the first connector the ego line enters ahead
    red_index = -1
    waits = False
    if k >= 0:
        path = paths[k]
        for row, start in zip(path.rows, path.row_start.tolist(), strict=True):
            if start <= 0.0 or fmap.kind[row] != CONNECTOR:
                continue
            if start <= RED_LIGHT_LOOKAHEAD_M:
                hit = np.flatnonzero(map_rows == row)
                if hit.size and map_tl_status[hit[0]] == TL_RED:
                    red_index = int(hit[0])
                    speed = float(np.hypot(*agents.velocity[0, present]))
                    waits = speed < WAITING_SPEED
                    obstacle_s = min(obstacle_s, start)
            break

    # interaction: future paths that come near the ego's
    interaction = np.zeros(a, dtype=bool)
    if a > 1:
        future = slice(present + 1, agents.position.shape[1])
        ego_f = agents.position[0, future].astype(np.float64)  # (F, 2)
        other = agents.position[1:, future].astype(np.float64)  # (A-1, F, 2)
        valid = agents.valid_mask[1:, future]
        # only agents whose future bounding box comes near the ego's need the pairwise check
        lo = np.where(valid[..., None], other, np.inf).min(axis=1)
        hi = np.where(valid[..., None], other, -np.inf).max(axis=1)
        ego_lo, ego_hi = ego_f.min(axis=0) - INTERACTION_M, ego_f.max(axis=0) + INTERACTION_M
        rows = np.flatnonzero(np.all((lo <= ego_hi) & (hi >= ego_lo), axis=1))
        if rows.size:
            diff = other[rows, :, None, :] - ego_f[None, None]  # (n, F, F, 2)
            d2 = (diff**2).sum(-1).min(-1)  # (n, F): to the nearest ego future point
            near = (d2 <= INTERACTION_M**2) & valid[rows]
            interaction[1 + rows] = near.any(axis=1)
        if leading > 0:
            interaction[leading] = True

    free = line_valid & (arc < obstacle_s)
    return CausalInfo(
        leading_agent_index=np.array(leading, dtype=np.int16),
        ego_waits_at_red_light=np.array(waits, dtype=bool),
        red_light_polygon_index=np.array(red_index, dtype=np.int16),
        free_path_points=(line * line_valid[:, None]).astype(np.float32),
        free_path_valid_mask=free,
        interaction_label=interaction,
    )
