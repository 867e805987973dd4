"""Run the open-loop evaluation: scenarios -> queried frames -> every planner -> scores.

Work unit = one log: its tables and map are read once, its queried frames' features are taken
from the feature cache when the frame is cached (and the cache was built by this feature code),
else built with the same :class:`~pluto_dvc.features.LogFeatureBuilder`. Evaluation needs no cost
map and no causal facts (training-only inputs), so those are neither built nor read. A scenario
with a frame the builder rejects (e.g. the ego off its route) is skipped for every planner and
reported with the reason, so all planners are scored on the same scenarios.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pluto_dvc.evaluation.open_loop import (
    OpenLoopConfig,
    ScenarioScore,
    score_frames,
    score_scenario,
)
from pluto_dvc.evaluation.planners import FrameBatch, Plan, Planner
from pluto_dvc.evaluation.scenarios import ScenarioTiming
from pluto_dvc.features import FeatureError, LogFeatureBuilder
from pluto_dvc.features.geometry import rotation, wrap_angle
from pluto_dvc.nuplan.log_records import LogArrays
from pluto_dvc.params import FeatureParams

TRAINING_ONLY_PREFIXES = ("cost_maps", "causal.")


def inference_features(features: FeatureParams) -> FeatureParams:
    """The feature params without the training-only parts (cost map, causal facts)."""
    return features.model_copy(update={"build_cost_map": False, "build_causal": False})


def inference_sample(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A cached sample without its training-only arrays."""
    return {k: v for k, v in sample.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}


@dataclass
class SceneFrame:
    """What a scene picture of one queried frame shows: the sample, the logged future
    (F, 3) ego frame, each planner's (F', 3) trajectory, and the model's candidates."""

    log_name: str
    token: str
    scenario_type: str
    sample: dict[str, np.ndarray]
    expert_future: np.ndarray
    plans: dict[str, np.ndarray]
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None


@dataclass
class ScenarioResult:
    """One evaluated scenario: per planner its score and (Q, K) comparison errors; ``picture``
    is its queried frame with the largest final error of the first planner."""

    log_name: str
    token: str
    scenario_type: str
    scores: dict[str, ScenarioScore]
    displacement: dict[str, np.ndarray]
    heading: dict[str, np.ndarray]
    picture: SceneFrame | None = None


@dataclass
class OpenLoopResult:
    scenarios: list[ScenarioResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # log_name, token, type, reason
    frames_cached: int = 0
    frames_built: int = 0
    seconds: float = 0.0


class FrameSource:
    """Features of a log's frames: cached sample when present (``lookup``), else the builder."""

    def __init__(
        self,
        builder: LogFeatureBuilder,
        lookup: Callable[[str, str], dict[str, np.ndarray] | None] | None = None,
    ):
        self.builder = builder
        self.lookup = lookup
        self.cached = self.built = 0

    def sample(self, log_name: str, token: str, frame: int) -> dict[str, np.ndarray]:
        if self.lookup is not None:
            found = self.lookup(log_name, token)
            if found is not None:
                self.cached += 1
                return inference_sample(found)
        self.built += 1
        return self.builder.build(frame)


def expert_future(log: LogArrays, frame: int, step: int, count: int) -> np.ndarray:
    """(count, 3) logged rear-axle poses at frames ``frame + step * (1..count)`` in the ego frame
    of ``frame``."""
    ego = log.ego
    frames = frame + step * np.arange(1, count + 1)
    origin = np.array([ego.x[frame], ego.y[frame]])
    angle = float(ego.heading[frame])
    xy = (np.stack([ego.x[frames], ego.y[frames]], axis=1) - origin) @ rotation(angle)
    return np.concatenate([xy, wrap_angle(ego.heading[frames] - angle)[:, None]], axis=1)


def expert_global(log: LogArrays, frame: int, step: int, count: int) -> np.ndarray:
    """(count, 3) global rear-axle poses at frames ``frame + step * (1..count)``."""
    ego = log.ego
    frames = frame + step * np.arange(1, count + 1)
    return np.stack([ego.x[frames], ego.y[frames], ego.heading[frames]], axis=1)


def _plan_all(planner: Planner, batch: FrameBatch, batch_size: int) -> Plan:
    """One planner over every frame, ``batch_size`` frames at a time."""
    parts = []
    for start in range(0, len(batch), batch_size):
        stop = start + batch_size
        parts.append(
            planner.plan(
                FrameBatch(
                    batch.samples[start:stop],
                    batch.expert_future[start:stop],
                    batch.expert_times_s,
                )
            )
        )
    times = parts[0].times_s
    has_candidates = parts[0].candidates is not None

    def cat(name: str) -> np.ndarray | None:
        if not has_candidates:
            return None
        arrays = [getattr(p, name) for p in parts]
        width = max(a.shape[1] for a in arrays)
        out = []
        for a in arrays:  # candidate counts may differ between batches: pad with NaN / 0
            pad = np.full((a.shape[0], width, *a.shape[2:]), np.nan if a.ndim > 2 else 0.0)
            pad[:, : a.shape[1]] = a
            out.append(pad)
        return np.concatenate(out)

    return Plan(
        times,
        np.concatenate([p.poses for p in parts]),
        cat("candidates"),
        cat("candidate_scores"),
    )


def evaluate_log(
    log: LogArrays,
    rows: pd.DataFrame,
    source: FrameSource,
    planners: Sequence[Planner],
    config: OpenLoopConfig,
    timing: ScenarioTiming,
    batch_size: int,
) -> tuple[list[ScenarioResult], list[dict[str, str]]]:
    """Score every planner on the scenarios ``rows`` (columns token, scenario_type, frame) of one
    log."""
    from pluto_dvc.nuplan.log_schema import tokens_hex

    tokens = tokens_hex(log.clock.token)
    builder = source.builder
    k = len(config.comparison_times_s)
    step_s = builder.params.sample_interval_s
    # the logged future at the feature steps, as long as the features' or the comparison's horizon
    steps = max(builder.future, int(round(config.comparison_times_s[-1] / step_s)))
    samples, future, comparison, owners = [], [], [], []
    kept, skipped = [], []
    for row in rows.itertuples(index=False):
        frames = [int(row.frame) + o for o in timing.query_offsets]
        try:
            built = [source.sample(log.meta.log_name, str(tokens[f]), f) for f in frames]
        except FeatureError as exc:
            skipped.append(
                {
                    "log_name": log.meta.log_name,
                    "token": row.token,
                    "scenario_type": row.scenario_type,
                    "reason": exc.reason,
                }
            )
            continue
        for f, sample in zip(frames, built, strict=True):
            samples.append(sample)
            future.append(expert_future(log, f, builder.step, steps))
            comparison.append(expert_global(log, f, timing.comparison_step, k))
            owners.append(len(kept))
        kept.append(row)
    if not kept:
        return [], skipped
    owners_arr = np.asarray(owners)
    expert_times = step_s * np.arange(1, steps + 1)
    batch = FrameBatch(samples, np.stack(future), expert_times)
    origin = np.stack([s["origin"] for s in samples]).astype(np.float64)
    angle = np.array([float(s["angle"]) for s in samples])
    expert = np.stack(comparison)
    plans: dict[str, Plan] = {}
    errors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for planner in planners:
        plan = _plan_all(planner, batch, batch_size)
        plans[planner.name] = plan
        errors[planner.name] = score_frames(plan.times_s, plan.poses, origin, angle, expert, config)
    results = []
    first = planners[0].name
    for i, row in enumerate(kept):
        mine = np.flatnonzero(owners_arr == i)
        disp = {n: d[mine] for n, (d, _) in errors.items()}
        head = {n: h[mine] for n, (_, h) in errors.items()}
        worst = int(mine[np.argmax(disp[first][:, -1])])
        model_plan = plans[first]
        picture = SceneFrame(
            log_name=log.meta.log_name,
            token=str(tokens[int(row.frame) + timing.query_offsets[worst - mine[0]]]),
            scenario_type=row.scenario_type,
            sample=samples[worst],
            expert_future=batch.expert_future[worst],
            plans={n: p.poses[worst] for n, p in plans.items()},
            candidates=None if model_plan.candidates is None else model_plan.candidates[worst],
            candidate_scores=None
            if model_plan.candidate_scores is None
            else model_plan.candidate_scores[worst],
        )
        results.append(
            ScenarioResult(
                log_name=log.meta.log_name,
                token=row.token,
                scenario_type=row.scenario_type,
                scores={n: score_scenario(disp[n], head[n], config) for n in disp},
                displacement=disp,
                heading=head,
                picture=picture,
            )
        )
    return results, skipped


def run_open_loop(
    chosen: pd.DataFrame,
    data_root: str | Path,
    maps_root: str | Path,
    features: FeatureParams,
    planners: Sequence[Planner],
    config: OpenLoopConfig,
    timing: ScenarioTiming,
    batch_size: int,
    lookup: Callable[[str, str], dict[str, np.ndarray] | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> OpenLoopResult:
    """Every planner on every chosen scenario (columns log_name, log_path, token, scenario_type,
    frame), one log at a time."""
    from pluto_dvc.nuplan.log_reader import load_log
    from pluto_dvc.nuplan.map_reader import MapsRoot

    start = time.perf_counter()
    out = OpenLoopResult()
    maps = MapsRoot(maps_root)
    for log_name, rows in chosen.groupby("log_name", sort=True):
        log = load_log(Path(data_root) / rows.log_path.iloc[0])
        builder = LogFeatureBuilder(inference_features(features), log, maps.load(log.meta.location))
        source = FrameSource(builder, lookup)
        results, skipped = evaluate_log(log, rows, source, planners, config, timing, batch_size)
        out.scenarios.extend(results)
        out.skipped.extend(skipped)
        out.frames_cached += source.cached
        out.frames_built += source.built
        if progress is not None:
            progress(
                f"{log_name}: {len(results)} scenarios scored, {len(skipped)} skipped "
                f"({source.cached} frames from the cache, {source.built} built)"
            )
    out.seconds = time.perf_counter() - start
    return out
