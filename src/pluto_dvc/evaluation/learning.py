"""Learning metrics on cached samples (spec/metrics.md section 1), with the training's metric
functions (``pluto_dvc.training.metrics``), so the report and the validation logs agree.

- minADE / minFDE: over the top-k (6) candidates by predicted score, the smallest average / final
  L2 error to the logged ego future, averaged over samples; also the top-1 candidate's ADE / FDE
  and the constant-velocity baseline's on the same samples.
- miss rate: share of samples whose best-of-top-k final error exceeds 2 m.
- prediction ADE / FDE: the agent-prediction head's errors over valid agent future steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pluto_dvc.evaluation.model_planner import ModelPlanner, valid_lines
from pluto_dvc.model import PlutoBatch, PlutoOutput
from pluto_dvc.training.metrics import planning_metrics, prediction_metrics

PLANNING = ("min_ade", "min_fde", "miss_rate", "top1_ade", "top1_fde", "cv_ade", "cv_fde")


class LearningSums:
    """Running sums over batches (the result does not depend on the batch size)."""

    def __init__(self) -> None:
        self.samples = 0
        self.sums = dict.fromkeys(PLANNING, 0.0)
        self.agents = 0
        self.prediction_ade = 0.0
        self.prediction_fde = 0.0

    def add(self, batch: PlutoBatch, output: PlutoOutput, top_k: int, miss_m: float, dt: float):
        f = output.trajectory.shape[3]
        present = batch.agent.position.shape[2] - f - 1
        future = slice(present + 1, None)
        position, valid = batch.agent.position[:, :, future], batch.agent.valid_mask[:, :, future]
        values, counted = planning_metrics(
            output.trajectory,
            output.probability,
            valid_lines(batch),
            position[:, 0],
            valid[:, 0],
            batch.agent.velocity[:, 0, present],
            dt,
            k=top_k,
            miss_m=miss_m,
        )
        self.samples += int(counted.sum())
        for name in PLANNING:
            self.sums[name] += float(values[name][counted].double().sum())
        ade, fde, agents = prediction_metrics(output.prediction, position[:, 1:], valid[:, 1:])
        self.agents += int(agents)
        self.prediction_ade += float(ade)
        self.prediction_fde += float(fde)

    def result(self) -> dict[str, float]:
        n = max(self.samples, 1)
        out: dict[str, float] = {"num_samples": self.samples}
        out.update({name: self.sums[name] / n for name in PLANNING})
        out["prediction_ade"] = self.prediction_ade / max(self.agents, 1)
        out["prediction_fde"] = self.prediction_fde / max(self.agents, 1)
        return out


def learning_metrics(
    planner: ModelPlanner,
    read_batch: Callable[[Sequence[int]], list[dict[str, np.ndarray]]],
    indices: Sequence[int],
    batch_size: int,
    top_k: int,
    miss_threshold_m: float,
) -> dict[str, float]:
    """Learning metrics of ``planner``'s model over the samples ``indices`` read by ``read_batch``."""
    sums = LearningSums()
    for start in range(0, len(indices), batch_size):
        samples = read_batch(indices[start : start + batch_size])
        batch, output = planner.forward(samples)
        sums.add(batch, output, top_k, miss_threshold_m, planner.step_s)
    return sums.result()


def spread_indices(count: int, limit: int | None) -> np.ndarray:
    """At most ``limit`` of ``range(count)``, evenly spaced (deterministic)."""
    if limit is None or count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))
