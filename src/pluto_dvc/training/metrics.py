"""Learning metrics of a planning output against the expert (spec section 4), as pure functions.

On the top ``k`` of the R x M candidates by score: minADE (the smallest ADE over all future
steps), minFDE, miss rate (every endpoint more than ``miss_m`` from the expert's); the top-1
candidate's ADE / FDE; a constant-velocity baseline on the same samples; prediction ADE / FDE
over valid agent steps. Errors are means over a sample's valid future steps (ADE) or at its last
valid step (FDE); each metric is returned per sample with the mask of samples it counts.
"""

from __future__ import annotations

import torch

from pluto_dvc.training.losses import PADDED_LOGIT


def _last_valid(valid: torch.Tensor) -> torch.Tensor:
    """(B, F) bool -> (B,) index of the last True step (0 when none)."""
    steps = torch.arange(valid.shape[-1], device=valid.device)
    return (steps * valid).amax(-1)


def displacement(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
    """pred (B, N, F, 2), target (B, F, 2), valid (B, F) -> ADE, FDE (B, N) metres."""
    err = (pred - target[:, None]).norm(dim=-1)  # (B, N, F)
    w = valid[:, None].to(err.dtype)
    ade = (err * w).sum(-1) / w.sum(-1).clamp(min=1.0)
    last = _last_valid(valid)
    fde = err.gather(2, last.view(-1, 1, 1).expand(-1, err.shape[1], 1)).squeeze(-1)
    return ade, fde


def planning_metrics(
    trajectory: torch.Tensor,
    logits: torch.Tensor,
    line_valid: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    cv_velocity: torch.Tensor,
    dt: float,
    k: int = 6,
    miss_m: float = 2.0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """trajectory (B, R, M, F, >=2), logits (B, R, M), line_valid (B, R), target (B, F, >=2),
    valid (B, F), cv_velocity (B, 2) -> ({name: (B,)}, counted (B,) bool)."""
    b, r, m, f = trajectory.shape[:4]
    scores = logits.float().masked_fill(~line_valid[..., None], PADDED_LOGIT).reshape(b, r * m)
    top = scores.topk(min(k, r * m), dim=-1).indices  # (B, k), best first
    cand = trajectory[..., :2].reshape(b, r * m, f, 2)
    cand = cand.gather(1, top[..., None, None].expand(-1, -1, f, 2))
    ade, fde = displacement(cand.float(), target[..., :2].float(), valid)
    t = torch.arange(1, f + 1, device=target.device, dtype=torch.float32) * dt
    cv = cv_velocity.float()[:, None, None, :] * t[None, None, :, None]
    cv_ade, cv_fde = displacement(cv, target[..., :2].float(), valid)
    end_err = fde
    out = {
        "min_ade": ade.amin(-1),
        "min_fde": fde.amin(-1),
        "miss_rate": (end_err > miss_m).all(-1).float(),
        "top1_ade": ade[:, 0],
        "top1_fde": fde[:, 0],
        "cv_ade": cv_ade[:, 0],
        "cv_fde": cv_fde[:, 0],
    }
    counted = valid.any(-1) & line_valid.any(-1)
    return out, counted


def prediction_metrics(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
    """pred / target (B, N, F, >=2), valid (B, N, F) -> (ADE, FDE) over agents with a valid step:
    sums and the count, so batches combine exactly."""
    err = (pred[..., :2].float() - target[..., :2].float()).norm(dim=-1)
    w = valid.float()
    per_agent_ade = (err * w).sum(-1) / w.sum(-1).clamp(min=1.0)
    last = _last_valid(valid)
    per_agent_fde = err.gather(-1, last[..., None]).squeeze(-1)
    has = valid.any(-1)
    n = has.sum()
    return (per_agent_ade * has).sum(), (per_agent_fde * has).sum(), n
