"""Training targets read from a batch (spec/pluto.md section 4): the expert futures in the
6-channel layout of the model's outputs, and the target query (reference line r*, mode m*).

Channels of a trajectory: x, y (m, ego rear-axle frame at the present step), cos and sin of the
heading, vx, vy (m/s). The present step is index ``history`` of the (A, T) timeline (T =
history + 1 + F); the expert's future is steps ``history + 1 ..``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def future_states(
    position: torch.Tensor,
    heading: torch.Tensor,
    velocity: torch.Tensor,
    valid_mask: torch.Tensor,
    future_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``future_steps`` steps of agent tracks as 6-channel states.

    position (B, A, T, 2), heading (B, A, T), velocity (B, A, T, 2), valid_mask (B, A, T) ->
    states (B, A, F, 6) float32 (0 where invalid), valid (B, A, F) bool.
    """
    sl = slice(-future_steps, None)
    h = heading[:, :, sl]
    states = torch.cat(
        [position[:, :, sl], torch.cos(h)[..., None], torch.sin(h)[..., None], velocity[:, :, sl]],
        dim=-1,
    ).float()
    valid = valid_mask[:, :, sl]
    return states * valid[..., None], valid


@dataclass
class TargetQuery:
    """line: (B,) int64 r* (0 where the sample has no valid line); mode: (B,) int64 m*;
    has_line: (B,) bool the sample has at least one valid reference line."""

    line: torch.Tensor
    mode: torch.Tensor
    has_line: torch.Tensor


def select_target(
    future_projection: torch.Tensor,
    line_valid: torch.Tensor,
    ego_future_valid: torch.Tensor,
    num_modes: int,
    mode_length_m: float,
) -> TargetQuery:
    """PLUTO's target query.

    future_projection (B, R, K, 2): the expert at 1 s steps projected on each line (arc length s,
    lateral d); line_valid (B, R) bool; ego_future_valid (B, F) bool (label-cleaned). The
    endpoint k = clamp(floor(valid future steps / 10), 0, K - 1); r* = argmin |d_k| over valid
    lines; m* = clamp(floor(s_k / (mode_length_m / num_modes)), 0, num_modes - 1).
    """
    k_max = future_projection.shape[2] - 1
    endpoint = torch.div(ego_future_valid.sum(-1), 10, rounding_mode="floor").clamp(0, k_max)
    idx = endpoint.view(-1, 1, 1, 1).expand(-1, future_projection.shape[1], 1, 2)
    at_end = future_projection.gather(2, idx).squeeze(2)  # (B, R, 2)
    lateral = at_end[..., 1].abs().masked_fill(~line_valid, float("inf"))
    line = lateral.argmin(dim=1)
    has_line = line_valid.any(dim=1)
    line = torch.where(has_line, line, torch.zeros_like(line))
    s = at_end[torch.arange(line.shape[0], device=line.device), line, 0]
    bin_m = mode_length_m / num_modes
    mode = torch.floor(s / bin_m).long().clamp(0, num_modes - 1)
    return TargetQuery(line=line, mode=mode, has_line=has_line)


def constant_velocity(velocity: torch.Tensor, future_steps: int, dt: float) -> torch.Tensor:
    """Constant-velocity baseline: (B, 2) present velocity (ego frame) -> (B, F, 2) positions."""
    t = torch.arange(1, future_steps + 1, device=velocity.device, dtype=velocity.dtype) * dt
    return velocity[:, None, :] * t[None, :, None]
