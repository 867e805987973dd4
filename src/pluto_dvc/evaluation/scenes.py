"""Scene pictures (PNG, matplotlib's headless Agg canvas, no pyplot state).

One queried frame in its ego frame (x forward, y left, metres): map polygons (lane and connector
boundaries, on-route lanes shaded, crosswalks hatched), the reference lines (dashed), static
objects, agents as boxes with their history, the ego box, the logged (expert) future, the model's
top candidates coloured and labelled by score, its chosen trajectory and the baselines'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from pluto_dvc.evaluation.runner import SceneFrame
from pluto_dvc.nuplan.vehicle import EGO_LENGTH_M, EGO_REAR_AXLE_TO_CENTER_M, EGO_WIDTH_M

AGENT_COLORS = {1: "#1f77b4", 2: "#9467bd", 3: "#17becf"}  # vehicle, pedestrian, bicycle
EGO_COLOR = "#d62728"
EXPERT_COLOR = "#2ca02c"
MODEL_COLOR = "#ff00aa"
BASELINE_STYLES = {
    "constant_velocity": ("#ff7f0e", "constant velocity"),
    "constant_velocity_reference_line": ("#8c564b", "CV along reference line"),
}


def box_corners(x: float, y: float, heading: float, width: float, length: float) -> np.ndarray:
    """(4, 2) corners of a box centred at (x, y)."""
    c, s = np.cos(heading), np.sin(heading)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    return np.array([x, y]) + half @ np.array([[c, s], [-s, c]])


def _draw_map(ax, sample: dict[str, np.ndarray]) -> None:
    pts = sample["map.point_position"]
    valid = sample["map.valid_mask"]
    kinds = sample["map.polygon_type"]
    on_route = sample["map.polygon_on_route"]
    for m in np.flatnonzero(valid.any(axis=1)):
        left, right = pts[m, 1], pts[m, 2]
        outline = np.concatenate([left, right[::-1]])
        if kinds[m] == 2:  # crosswalk
            ax.add_patch(
                Polygon(outline, closed=True, fc="#dddddd", ec="#999999", hatch="//", lw=0.5)
            )
            continue
        if on_route[m]:
            ax.add_patch(Polygon(outline, closed=True, fc="#fff3c4", ec="none", zorder=0))
        ax.plot(left[:, 0], left[:, 1], color="#888888", lw=0.7, zorder=1)
        ax.plot(right[:, 0], right[:, 1], color="#888888", lw=0.7, zorder=1)
        ax.plot(pts[m, 0, :, 0], pts[m, 0, :, 1], color="#cccccc", lw=0.5, ls=":", zorder=1)


def _draw_objects(ax, sample: dict[str, np.ndarray], present: int) -> None:
    if "reference_line.position" in sample:
        for line, ok in zip(
            sample["reference_line.position"], sample["reference_line.valid_mask"], strict=True
        ):
            if ok.any():
                ax.plot(*line[ok].T, color="#4c72b0", lw=1.2, ls="--", alpha=0.8, zorder=2)
    if "static_objects.position" in sample:
        for xy, h, (w, ln), ok in zip(
            sample["static_objects.position"],
            sample["static_objects.heading"],
            sample["static_objects.shape"],
            sample["static_objects.valid_mask"],
            strict=True,
        ):
            if ok:
                ax.add_patch(Polygon(box_corners(*xy, h, w, ln), fc="#7f7f7f", ec="k", lw=0.5))
    pos, head = sample["agent.position"], sample["agent.heading"]
    shape, valid, cat = sample["agent.shape"], sample["agent.valid_mask"], sample["agent.category"]
    for a in range(1, len(cat)):
        if not valid[a, present]:
            continue
        color = AGENT_COLORS.get(int(cat[a]), "#1f77b4")
        hist = valid[a, : present + 1]
        ax.plot(*pos[a, : present + 1][hist].T, color=color, lw=1.0, alpha=0.6, zorder=3)
        w, ln = shape[a, present]
        corners = box_corners(*pos[a, present], head[a, present], w, ln)
        ax.add_patch(Polygon(corners, fc=color, ec="k", lw=0.5, alpha=0.85, zorder=4))
    ego_hist = pos[0, : present + 1]
    ax.plot(*ego_hist.T, color=EGO_COLOR, lw=1.0, alpha=0.6, zorder=3)
    corners = box_corners(EGO_REAR_AXLE_TO_CENTER_M, 0.0, 0.0, EGO_WIDTH_M, EGO_LENGTH_M)
    ax.add_patch(Polygon(corners, fc=EGO_COLOR, ec="k", lw=0.8, zorder=6, label="ego"))


def _draw_plans(ax, frame: SceneFrame, num_candidates: int) -> None:
    if frame.candidates is not None and num_candidates > 0:
        cands = frame.candidates[:num_candidates]
        scores = frame.candidate_scores[:num_candidates]
        top = max(float(np.nanmax(scores)), 1e-9) if len(scores) else 1.0
        for i, (traj, score) in enumerate(zip(cands, scores, strict=True)):
            if not np.isfinite(traj).all():
                continue
            alpha = 0.25 + 0.65 * float(score) / top
            ax.plot(*traj[:, :2].T, color="#e377c2", lw=1.0 + 2.0 * float(score), alpha=alpha)
            if i < 3:
                ax.annotate(f"{score:.2f}", traj[-1, :2], fontsize=7, color="#a0006b", zorder=9)
    future = frame.expert_future
    ax.plot(*future[:, :2].T, color=EXPERT_COLOR, lw=2.5, zorder=7, label="expert (log)")
    ax.plot(*future[9::10, :2].T, "o", color=EXPERT_COLOR, ms=3, zorder=7)
    for name, poses in frame.plans.items():
        if name == "model":
            ax.plot(*poses[:, :2].T, color=MODEL_COLOR, lw=2.0, zorder=9, label="model top-1")
        elif name in BASELINE_STYLES:
            color, label = BASELINE_STYLES[name]
            ax.plot(*poses[:, :2].T, color=color, lw=1.3, ls="--", zorder=8, label=label)


def draw_scene(
    frame: SceneFrame,
    path: str | Path,
    size_px: int = 800,
    radius_m: float = 60.0,
    num_candidates: int = 6,
    title: str = "",
) -> Path:
    """Write one scene picture as a ``size_px`` x ``size_px`` PNG; returns its path."""
    sample = frame.sample
    future_steps = sample["agent.target"].shape[1]
    present = sample["agent.position"].shape[1] - future_steps - 1
    fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    ax = fig.add_axes((0.06, 0.05, 0.92, 0.88))
    _draw_map(ax, sample)
    _draw_objects(ax, sample, present)
    _draw_plans(ax, frame, num_candidates)
    ax.set_xlim(-0.5 * radius_m, 1.5 * radius_m)
    ax.set_ylim(-radius_m, radius_m)
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m, ego frame)", fontsize=7)
    ax.set_ylabel("y (m)", fontsize=7)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    head = f"{frame.scenario_type}  {frame.token}"
    fontsize = 8 if size_px >= 600 else 6
    fig.suptitle(f"{head}\n{title}" if title else head, fontsize=fontsize)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path
