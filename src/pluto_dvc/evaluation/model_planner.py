"""The PLUTO network as a planner: top-1 trajectory for the open-loop score, scored candidates for
the pictures. Batches are collated from flat samples exactly as training batches are."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pluto_dvc.evaluation.planners import FrameBatch, Plan
from pluto_dvc.features.collate import collate
from pluto_dvc.model import PlutoBatch, PlutoOutput


def to_batch(samples: Sequence[dict[str, np.ndarray]], device: str = "cpu") -> PlutoBatch:
    """The typed batch of flat samples (padded like the training loader's)."""
    return PlutoBatch.from_flat(collate(samples)).to(device)


def valid_lines(batch: PlutoBatch) -> torch.Tensor:
    """(B, R) bool: reference lines with at least one valid point ((B, 0) without lines)."""
    if batch.reference_line is None:
        return torch.zeros(batch.batch_size, 0, dtype=torch.bool, device=batch.current_state.device)
    return batch.reference_line.valid_mask.any(-1)


def top_candidates(
    output: PlutoOutput, lines: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, F, 6) the ``count`` best candidates over R x M (padded lines masked) and (B, C)
    their probabilities (softmax over the valid candidates); C = min(count, R x M)."""
    b, r, m, f, c = output.trajectory.shape
    logits = output.probability.masked_fill(~lines[..., None], float("-inf")).reshape(b, r * m)
    k = min(count, r * m)
    if k == 0:
        return output.trajectory.new_zeros(b, 0, f, c), output.probability.new_zeros(b, 0)
    prob = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    scores, index = prob.topk(k, dim=-1)
    chosen = output.trajectory.reshape(b, r * m, f, c).gather(
        1, index[:, :, None, None].expand(b, k, f, c)
    )
    return chosen, scores


def xy_heading(trajectory: torch.Tensor) -> np.ndarray:
    """(..., 3) float64 x, y, heading of (..., 6) trajectory channels."""
    heading = PlutoOutput.heading(trajectory)
    return torch.cat([trajectory[..., :2], heading[..., None]], dim=-1).double().cpu().numpy()


class ModelPlanner:
    """A PLUTO model (``forward(PlutoBatch) -> PlutoOutput``) in eval mode, no gradients."""

    name = "model"

    def __init__(
        self, model: torch.nn.Module, step_s: float, num_candidates: int = 6, device: str = "cpu"
    ):
        self.model = model.eval().to(device)
        self.step_s = step_s
        self.num_candidates = num_candidates
        self.device = device

    @torch.inference_mode()
    def forward(self, samples: Sequence[dict[str, np.ndarray]]) -> tuple[PlutoBatch, PlutoOutput]:
        batch = to_batch(samples, self.device)
        return batch, self.model(batch)

    def plan(self, frames: FrameBatch) -> Plan:
        batch, output = self.forward(frames.samples)
        lines = valid_lines(batch)
        best = output.best_trajectory(lines, self.step_s)
        candidates, scores = top_candidates(output, lines, self.num_candidates)
        f = best.shape[1]
        return Plan(
            times_s=self.step_s * np.arange(1, f + 1, dtype=np.float64),
            poses=xy_heading(best),
            candidates=xy_heading(candidates),
            candidate_scores=scores.double().cpu().numpy(),
        )
