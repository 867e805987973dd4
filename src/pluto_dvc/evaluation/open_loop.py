"""nuPlan's open-loop score (OLS), as the devkit's ``open_loop_boxes`` metrics compute it.

Per scenario (15 s of log), the planner is queried every second; at each queried frame its top-1
trajectory is read at the expert's comparison times 1, 2, ..., 8 s ahead (interpolated; a
trajectory shorter than that is extended by repeating its last pose), and compared with the
expert's poses there. Poses are the **box centre** (rear axle + 1.461 m along the heading) and the
heading, as the devkit's ``extract_ego_center_with_heading``. For each horizon h (3, 5, 8 s):
ADE_h / AHE_h = mean of the first h position / heading errors, FDE_h / FHE_h = the error at h, and
the maximum position error within h (the miss-rate statistic).

Scenario score = miss-rate multiplier x (1 ADE + 2 AHE + 1 FDE + 2 FHE) / 6, where each component
score is ``max(0, 1 - mean / bound)`` over horizons and frames, and the multiplier is 1 when every
horizon's share of frames with a maximum displacement above its threshold is at most 0.3, else 0.
OLS = mean of the scenario scores (spec/metrics.md section 2).

Arrays: N frames, F planner steps, K comparison points, H horizons. Poses are (..., 3) float64
x, y (m), heading (rad).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pluto_dvc.features.geometry import wrap_angle
from pluto_dvc.nuplan.vehicle import EGO_REAR_AXLE_TO_CENTER_M
from pluto_dvc.params import EvaluateParams

# Weights of the devkit's open_loop_boxes_weighted_average (the miss rate is the multiplier).
WEIGHTS = {"ade": 1.0, "ahe": 2.0, "fde": 1.0, "fhe": 2.0}


@dataclass(frozen=True)
class OpenLoopConfig:
    """Comparison times and bounds (defaults: the devkit's)."""

    comparison_interval_s: float = 1.0
    horizons_s: tuple[float, ...] = (3.0, 5.0, 8.0)
    max_average_l2_error_m: float = 8.0
    max_final_l2_error_m: float = 8.0
    max_average_heading_error_rad: float = 0.8
    max_final_heading_error_rad: float = 0.8
    miss_thresholds_m: tuple[float, ...] = (6.0, 8.0, 16.0)
    max_miss_rate: float = 0.3

    @classmethod
    def from_params(cls, p: EvaluateParams) -> OpenLoopConfig:
        return cls(
            comparison_interval_s=p.comparison_interval_s,
            horizons_s=tuple(p.comparison_horizons_s),
            max_average_l2_error_m=p.max_average_l2_error_m,
            max_final_l2_error_m=p.max_final_l2_error_m,
            max_average_heading_error_rad=p.max_average_heading_error_rad,
            max_final_heading_error_rad=p.max_final_heading_error_rad,
            miss_thresholds_m=tuple(p.miss_displacement_thresholds_m),
            max_miss_rate=p.max_miss_rate,
        )

    @property
    def horizon_points(self) -> np.ndarray:
        """(H,) int number of comparison points within each horizon."""
        return np.rint(np.asarray(self.horizons_s) / self.comparison_interval_s).astype(np.int64)

    @property
    def comparison_times_s(self) -> np.ndarray:
        """(K,) float64 seconds after the queried frame: interval, 2 interval, ..., max horizon."""
        k = int(self.horizon_points.max())
        return self.comparison_interval_s * np.arange(1, k + 1, dtype=np.float64)


def poses_at(times_s: np.ndarray, poses: np.ndarray, query_s: np.ndarray) -> np.ndarray:
    """(N, Q, 3) poses of N trajectories at ``query_s`` (Q,) seconds after the present.

    times_s: (F,) increasing seconds > 0 shared by the trajectories; poses: (N, F, 3). The present
    pose is the ego-frame origin (0, 0, 0), prepended, so queries before the first step
    interpolate from it. Positions and (unwrapped) headings are interpolated linearly; a query
    after the last step takes the last pose (a short trajectory is extended by its last point).
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    if times_s.ndim != 1 or poses.ndim != 3 or poses.shape[1:] != (len(times_s), 3):
        raise ValueError(f"poses {poses.shape} do not match times {times_s.shape}: need (N, F, 3)")
    if len(times_s) and (times_s[0] <= 0 or np.any(np.diff(times_s) <= 0)):
        raise ValueError("trajectory times must be increasing and after the present (> 0 s)")
    t = np.concatenate([[0.0], times_s])
    p = np.concatenate([np.zeros((len(poses), 1, 3)), poses], axis=1)
    p[..., 2] = np.unwrap(p[..., 2], axis=1)
    q = np.clip(np.asarray(query_s, dtype=np.float64), 0.0, t[-1])
    hi = np.clip(np.searchsorted(t, q, side="left"), 1, len(t) - 1)
    lo = hi - 1
    span = t[hi] - t[lo]
    w = np.where(span > 0, (q - t[lo]) / np.where(span > 0, span, 1.0), 1.0)[None, :, None]
    out = p[:, lo] * (1.0 - w) + p[:, hi] * w
    out[..., 2] = wrap_angle(out[..., 2])
    return out


def to_global(local: np.ndarray, origin: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(N, K, 3) global poses of ego-frame poses ``local`` (N, K, 3); origin (N, 2), angle (N,)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y = local[..., 0], local[..., 1]
    gx = origin[:, 0:1] + c * x - s * y
    gy = origin[:, 1:2] + s * x + c * y
    return np.stack([gx, gy, wrap_angle(local[..., 2] + angle[:, None])], axis=-1)


def rear_axle_to_center(poses: np.ndarray) -> np.ndarray:
    """Box-centre poses (the devkit compares ``ego_state.center``) of rear-axle poses."""
    out = np.array(poses, dtype=np.float64, copy=True)
    out[..., 0] += EGO_REAR_AXLE_TO_CENTER_M * np.cos(out[..., 2])
    out[..., 1] += EGO_REAR_AXLE_TO_CENTER_M * np.sin(out[..., 2])
    return out


def comparison_errors(planned: np.ndarray, expert: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) position L2 errors (m) and heading errors |wrap(planned - expert)| (rad)."""
    displacement = np.hypot(planned[..., 0] - expert[..., 0], planned[..., 1] - expert[..., 1])
    heading = np.abs(wrap_angle(planned[..., 2] - expert[..., 2]))
    return displacement, heading


@dataclass(frozen=True)
class HorizonErrors:
    """Per horizon and frame: (H, N) float64 ADE, FDE, max displacement (m), AHE, FHE (rad)."""

    ade: np.ndarray
    fde: np.ndarray
    max_displacement: np.ndarray
    ahe: np.ndarray
    fhe: np.ndarray


def horizon_errors(
    displacement: np.ndarray, heading: np.ndarray, config: OpenLoopConfig
) -> HorizonErrors:
    """The statistics of each horizon from the (N, K) errors at the comparison points."""
    points = config.horizon_points
    if displacement.shape[-1] < points.max():
        raise ValueError(f"{displacement.shape[-1]} comparison points, {points.max()} needed")
    return HorizonErrors(
        ade=np.stack([displacement[:, :k].mean(axis=1) for k in points]),
        fde=np.stack([displacement[:, k - 1] for k in points]),
        max_displacement=np.stack([displacement[:, :k].max(axis=1) for k in points]),
        ahe=np.stack([heading[:, :k].mean(axis=1) for k in points]),
        fhe=np.stack([heading[:, k - 1] for k in points]),
    )


@dataclass(frozen=True)
class ScenarioScore:
    """One scenario's open-loop metrics.

    ade_m, fde_m, ahe_rad, fhe_rad: the statistic averaged over horizons and frames.
    miss_rates: per horizon, the share of frames whose maximum displacement exceeds its threshold.
    *_score: the metric scores in [0, 1]; miss_rate_score is the 0/1 multiplier; score = OLS.
    """

    ade_m: float
    fde_m: float
    ahe_rad: float
    fhe_rad: float
    miss_rates: tuple[float, ...]
    ade_score: float
    fde_score: float
    ahe_score: float
    fhe_score: float
    miss_rate_score: float
    score: float

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        rates = out.pop("miss_rates")
        out.update({f"miss_rate_{i}": float(r) for i, r in enumerate(rates)})
        return out


def _bounded(value: float, bound: float) -> float:
    return max(0.0, 1.0 - value / bound)


def score_scenario(
    displacement: np.ndarray, heading: np.ndarray, config: OpenLoopConfig
) -> ScenarioScore:
    """The score of one scenario from its queried frames' (N, K) comparison errors."""
    if displacement.ndim != 2 or len(displacement) == 0:
        raise ValueError("a scenario needs at least one queried frame: errors of shape (N, K)")
    e = horizon_errors(displacement, heading, config)
    ade, fde = float(e.ade.mean(axis=1).mean()), float(e.fde.mean(axis=1).mean())
    ahe, fhe = float(e.ahe.mean(axis=1).mean()), float(e.fhe.mean(axis=1).mean())
    thresholds = np.asarray(config.miss_thresholds_m)[:, None]
    miss_rates = (e.max_displacement > thresholds).mean(axis=1)
    multiplier = float(np.all(miss_rates <= config.max_miss_rate))
    scores = {
        "ade": _bounded(ade, config.max_average_l2_error_m),
        "fde": _bounded(fde, config.max_final_l2_error_m),
        "ahe": _bounded(ahe, config.max_average_heading_error_rad),
        "fhe": _bounded(fhe, config.max_final_heading_error_rad),
    }
    weighted = sum(WEIGHTS[k] * v for k, v in scores.items()) / sum(WEIGHTS.values())
    return ScenarioScore(
        ade_m=ade,
        fde_m=fde,
        ahe_rad=ahe,
        fhe_rad=fhe,
        miss_rates=tuple(float(r) for r in miss_rates),
        ade_score=scores["ade"],
        fde_score=scores["fde"],
        ahe_score=scores["ahe"],
        fhe_score=scores["fhe"],
        miss_rate_score=multiplier,
        score=multiplier * weighted,
    )


def score_frames(
    times_s: np.ndarray,
    planned_local: np.ndarray,
    origin: np.ndarray,
    angle: np.ndarray,
    expert_rear_axle: np.ndarray,
    config: OpenLoopConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) displacement and heading errors of N queried frames.

    planned_local: (N, F, 3) rear-axle poses in each frame's ego frame at ``times_s`` (F,);
    origin (N, 2) float64 / angle (N,) the frame's global ego pose; expert_rear_axle: (N, K, 3)
    global rear-axle poses of the expert at the comparison times.
    """
    local = poses_at(times_s, planned_local, config.comparison_times_s)
    planned = rear_axle_to_center(to_global(local, origin, angle))
    return comparison_errors(planned, rear_axle_to_center(expert_rear_axle))
