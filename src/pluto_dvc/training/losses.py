"""PLUTO's training losses (spec/pluto.md section 4) as pure functions of tensors.

Each returns a scalar; every masked mean over an empty set is 0 (with a gradient path), never NaN.
Trajectory channels: x, y (m), cos, sin of the heading, vx, vy (m/s), ego frame at the present.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pluto_dvc.nuplan.vehicle import EGO_LENGTH_M, EGO_REAR_AXLE_TO_CENTER_M, EGO_WIDTH_M

PADDED_LOGIT = -1e6

# Ego footprint as three circles (nuPlan's Pacifica; rear-axle frame).
EGO_REAR_M = EGO_LENGTH_M / 2 - EGO_REAR_AXLE_TO_CENTER_M  # rear axle to rear bumper, 1.127 m
EGO_FRONT_M = EGO_LENGTH_M - EGO_REAR_M  # rear axle to front bumper, 4.049 m
NUM_CIRCLES = 3


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 of the target query's trajectory.

    pred (B, F, C), target (B, F, C), valid (B, F) bool -> mean over valid (step, channel).
    """
    per = F.smooth_l1_loss(pred, target, reduction="none")
    return _masked_mean(per, valid[..., None].expand_as(per))


def classification_loss(
    logits: torch.Tensor,
    line_valid: torch.Tensor,
    line: torch.Tensor,
    mode: torch.Tensor,
    sample_mask: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy over the flattened R x M scores, padded lines at -1e6.

    logits (B, R, M), line_valid (B, R) bool, line / mode (B,) int64 target, sample_mask (B,) bool
    (samples with a valid line) -> mean over those samples.
    """
    b, r, m = logits.shape
    masked = logits.float().masked_fill(~line_valid[..., None], PADDED_LOGIT).reshape(b, r * m)
    per = F.cross_entropy(masked, line * m + mode, reduction="none")
    return _masked_mean(per, sample_mask)


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Agent prediction: smooth-L1 summed over channels, averaged over valid (agent, step) pairs.

    pred (B, N, F, C), target (B, N, F, C), valid (B, N, F) bool.
    """
    per = F.smooth_l1_loss(pred, target, reduction="none").sum(-1)
    return _masked_mean(per, valid)


def ego_circles(trajectory: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Centres of the ego's three covering circles along a trajectory, and their radius.

    trajectory (B, F, >=4) x, y, cos, sin -> centres (B, F, 3, 2), radius (m). Circle i sits at
    -rear + l (i + 0.5) along the heading, l = length / 3; radius sqrt(w^2 + l^2) / 2 - 0.2.
    """
    length = EGO_FRONT_M + EGO_REAR_M
    spacing = length / NUM_CIRCLES
    offsets = -EGO_REAR_M + spacing * (torch.arange(NUM_CIRCLES, device=trajectory.device) + 0.5)
    direction = F.normalize(trajectory[..., 2:4], dim=-1, eps=1e-6)  # (B, F, 2)
    centres = (
        trajectory[..., None, 0:2] + offsets.to(trajectory.dtype)[:, None] * direction[..., None, :]
    )
    radius = math.sqrt(EGO_WIDTH_M**2 + spacing**2) / 2 - 0.2
    return centres, radius


def sample_cost_map(
    cost_map: torch.Tensor, points: torch.Tensor, resolution: float
) -> torch.Tensor:
    """Bilinear signed distance at ego-frame points (CONTRACT convention: column W/2 + x/res,
    row H/2 - y/res; normalised grid (x / half, -y / half), align_corners=False).

    cost_map (B, H, W, 1) (any float dtype), points (B, N, 2) m -> (B, N) float32 m.
    """
    half = cost_map.shape[2] * resolution / 2
    grid = torch.stack([points[..., 0] / half, -points[..., 1] / half], dim=-1)[:, :, None]
    image = cost_map.permute(0, 3, 1, 2).float()
    return F.grid_sample(image, grid.float(), mode="bilinear", align_corners=False)[:, 0, :, 0]


def collision_loss(
    trajectory: torch.Tensor, cost_map: torch.Tensor, resolution: float
) -> torch.Tensor:
    """Hinge of the ego circles against the signed-distance map.

    trajectory (B, F, >=4), cost_map (B, H, W, 1) signed distance (m, positive on drivable area)
    -> sum of max(radius - distance, 0) over (sample, step, circle) divided by the number of
    positive terms inside 95 % of the map; only samples whose ego starts on the drivable area
    (distance > 0 at the map centre).
    """
    b, f = trajectory.shape[:2]
    centres, radius = ego_circles(trajectory)
    points = centres.reshape(b, f * NUM_CIRCLES, 2)
    distance = sample_cost_map(cost_map, points, resolution)
    half = cost_map.shape[2] * resolution / 2
    inside = (points.abs() < 0.95 * half).all(-1)
    origin = sample_cost_map(cost_map, torch.zeros_like(points[:, :1]), resolution)[:, 0]
    on_road = (origin > 0)[:, None]
    hinge = (radius - distance).clamp(min=0.0) * (inside & on_road)
    count = (hinge > 0).sum().clamp(min=1)
    return hinge.sum() / count


def ref_free_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Reference-free head: smooth-L1 on x, y, cos, sin. pred (B, F, 4), target (B, F, >=4),
    valid (B, F) bool."""
    return regression_loss(pred, target[..., :4], valid)


def contrastive_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE of one positive against one negative per anchor (triplet cross-entropy).

    anchor, positive, negative (N, D) -> mean over N of -log softmax([cos(a, p), cos(a, n)] / t)[0].
    """
    a = F.normalize(anchor.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    n = F.normalize(negative.float(), dim=-1)
    logits = torch.stack([(a * p).sum(-1), (a * n).sum(-1)], dim=-1) / temperature
    return F.cross_entropy(logits, torch.zeros(a.shape[0], dtype=torch.long, device=a.device))
