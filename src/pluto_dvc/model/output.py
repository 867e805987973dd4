"""What the model returns: ``PlutoOutput`` (spec section 3, "Outputs")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Channels of a trajectory step: x, y (m, ego frame at present), cos, sin of the heading
# (unnormalised), vx, vy (m/s).
TRAJECTORY_CHANNELS = ("x", "y", "cos", "sin", "vx", "vy")


@dataclass
class PlutoOutput:
    """The network's outputs for a batch of B samples (F future steps at the cache's interval).

    trajectory: (B, R, M, F, 6) float, per reference line and mode: x, y (absolute, ego
        rear-axle frame at present, m), cos, sin of the heading (unnormalised), vx, vy (m/s).
    probability: (B, R, M) raw score logits; padded lines are not masked here (losses and
        inference mask them with ``reference_line.valid_mask.any(-1)``).
    prediction: (B, A-1, F, 6) agents 1..A-1, same channels (positions absolute, ego frame).
    ref_free_trajectory: (B, F, 4) x, y, cos, sin from the ego token, or None (head off).
    hidden: (B, D) projection of the ego token for the contrastive loss, or None (head off).
    """

    trajectory: Tensor
    probability: Tensor
    prediction: Tensor
    ref_free_trajectory: Tensor | None = None
    hidden: Tensor | None = None

    def best_trajectory(self, valid_lines: Tensor, step_s: float = 0.1) -> Tensor:
        """(B, F, 6) the highest-scoring candidate over R x M, padded lines masked out.

        ``valid_lines``: (B, R) bool, e.g. ``batch.reference_line.valid_mask.any(-1)``. A sample
        with no valid line gets the reference-free trajectory, its velocity the finite
        difference of its positions over ``step_s`` (from the ego at the origin); without the
        reference-free head such a sample raises ``ValueError``."""
        b, r, m, f, c = self.trajectory.shape
        has_line = valid_lines.any(-1) if r else valid_lines.new_zeros(b)
        if r:
            logits = self.probability.masked_fill(~valid_lines[..., None], float("-inf"))
            best = logits.reshape(b, r * m).argmax(-1)
            chosen = self.trajectory.reshape(b, r * m, f, c)[torch.arange(b), best]
        else:
            chosen = self.trajectory.new_zeros(b, f, c)
        if bool(has_line.all()):
            return chosen
        if self.ref_free_trajectory is None:
            missing = (~has_line).nonzero().flatten().tolist()
            raise ValueError(
                f"samples {missing} have no valid reference line and the model has no "
                "reference-free head (model.ref_free_head): no plan can be chosen"
            )
        free = self.ref_free_trajectory
        xy = free[..., :2]
        velocity = torch.diff(xy, dim=1, prepend=xy.new_zeros(b, 1, 2)) / step_s
        fallback = torch.cat([free, velocity], dim=-1).to(chosen.dtype)
        return torch.where(has_line[:, None, None], chosen, fallback)

    @staticmethod
    def heading(trajectory: Tensor) -> Tensor:
        """Heading (rad) of a (..., >=4) trajectory: atan2(sin, cos)."""
        return torch.atan2(trajectory[..., 3], trajectory[..., 2])
