"""Learning metrics on cached samples (spec/metrics.md section 1), as PLUTO logs them.

- minADE / minFDE: over the top-k (6) candidates by predicted score, the smallest average / final
  L2 error to the logged ego future, averaged over samples.
- MR: share of samples whose best-of-top-k final error exceeds 2 m.
- prediction ADE / FDE: L2 error of the agent-prediction head over valid agent future steps
  (FDE: agents valid at the last step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pluto_dvc.evaluation.model_planner import ModelPlanner, top_candidates, valid_lines
from pluto_dvc.model import PlutoBatch, PlutoOutput


@dataclass
class LearningSums:
    """Running sums over batches (so the result does not depend on the batch size)."""

    samples: int = 0
    min_ade: float = 0.0
    min_fde: float = 0.0
    misses: int = 0
    prediction_error: float = 0.0
    prediction_steps: int = 0
    prediction_final_error: float = 0.0
    prediction_final_agents: int = 0

    def add(self, other: LearningSums) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def result(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {
            "num_samples": self.samples,
            "min_ade": self.min_ade / n,
            "min_fde": self.min_fde / n,
            "miss_rate": self.misses / n,
            "prediction_ade": self.prediction_error / max(self.prediction_steps, 1),
            "prediction_fde": self.prediction_final_error / max(self.prediction_final_agents, 1),
        }


def batch_sums(
    batch: PlutoBatch, output: PlutoOutput, top_k: int, miss_threshold_m: float
) -> LearningSums:
    """The metric sums of one batch."""
    f = output.trajectory.shape[3]
    present = batch.agent.position.shape[2] - f - 1
    target = batch.agent.position[:, 0, present + 1 :].double()  # (B, F, 2) ego future
    mask = batch.agent.valid_mask[:, 0, present + 1 :].double()
    candidates, _ = top_candidates(output, valid_lines(batch), top_k)
    err = torch.linalg.vector_norm(candidates[..., :2].double() - target[:, None], dim=-1)
    ade = (err * mask[:, None]).sum(-1) / mask.sum(-1).clamp(min=1)[:, None]  # (B, C)
    min_ade = ade.min(dim=1).values
    min_fde = err[..., -1].min(dim=1).values

    agents = batch.agent.position[:, 1:, present + 1 :].double()
    amask = batch.agent.valid_mask[:, 1:, present + 1 :]
    perr = torch.linalg.vector_norm(output.prediction[..., :2].double() - agents, dim=-1)
    return LearningSums(
        samples=int(target.shape[0]),
        min_ade=float(min_ade.sum()),
        min_fde=float(min_fde.sum()),
        misses=int((min_fde > miss_threshold_m).sum()),
        prediction_error=float(perr[amask].sum()),
        prediction_steps=int(amask.sum()),
        prediction_final_error=float(perr[..., -1][amask[..., -1]].sum()),
        prediction_final_agents=int(amask[..., -1].sum()),
    )


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
        sums.add(batch_sums(batch, output, top_k, miss_threshold_m))
    return sums.result()


def spread_indices(count: int, limit: int | None) -> np.ndarray:
    """At most ``limit`` of ``range(count)``, evenly spaced (deterministic)."""
    if limit is None or count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))
