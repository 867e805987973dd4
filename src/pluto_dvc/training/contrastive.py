"""Contrastive imitation learning (CIL) augmentation, on flat batches ``{key: tensor (B, ...)}``.

``make_contrastive_batch(flat, ...)`` returns ``[anchor | positive | negative]`` concatenated
along B (3B samples; the agent axis gains one padding row so that a leading agent can be
inserted) and the masks telling which positives / negatives are usable. Everything is vectorised
over the batch; random draws use the global torch RNG (seeded per epoch by the trainer).

Positive (a scene that should give the same plan): the ego's present state is perturbed by a
uniform draw within +-(1.0 m, 0.75 m, 0.35 rad, 1 m/s, 0.5 m/s^2, 0.2 rad, 0.1 rad/s) on (x, y,
yaw, v, a, steering, yaw rate); a draw whose ego circles would overlap an agent or leave the
drivable area is replaced by no perturbation. The whole sample is then re-centred on the perturbed
ego (every position, heading and vector, the cost map by bilinear resampling, and the reference
lines' ``future_projection`` recomputed, so the target query follows the shifted frame). With
probability ``drop_non_interacting_probability`` the agents without ``causal.interaction_label``
are dropped.

Negative (a causal change that should change the plan), one applicable kind drawn per sample:
``drop_leading`` (the leading agent disappears), ``drop_interacting`` (every interacting agent),
``red_light_to_green`` (the red lights the ego waits at turn green), ``insert_leading`` (a
stopped vehicle placed on the ego's free path, 8-30 m ahead). A sample where no kind applies has no
negative (``negative_valid`` False) and is left out of the contrastive loss.

Causal keys read (PLUTO's names, CONTRACT): ``causal.leading_agent_mask`` (B, A) bool,
``causal.interaction_label`` (B, A) (non-zero: interacting), ``causal.is_waiting_for_red_light_without_lead`` (B,) bool,
``causal.ego_care_red_light_mask`` (B, M) bool, ``causal.free_path_points`` (B, N, >=2) with an
optional ``causal.free_path_valid_mask`` (B, N) bool. Missing keys disable the kinds needing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pluto_dvc.features.records import AgentCategory
from pluto_dvc.nuplan.log_schema import TrafficLightStatus
from pluto_dvc.training.losses import ego_circles, sample_cost_map

STATE_NOISE = (1.0, 0.75, 0.35, 1.0, 0.5, 0.2, 0.1)  # x, y, yaw, v, a, steer, yaw rate
INSERT_RANGE_M = (8.0, 30.0)
INSERTED_SHAPE = (2.0, 4.6)  # width, length (m)

# keys holding ego-frame points (x, y in the last axis, or its first two channels)
_POINTS = (
    "agent.position",
    "map.point_position",
    "map.polygon_position",
    "map.polygon_center",
    "reference_line.position",
    "static_objects.position",
    "causal.free_path_points",
)
_VECTORS = ("agent.velocity", "map.point_vector", "reference_line.vector", "agent.target")
_ANGLES = (
    "agent.heading",
    "map.point_orientation",
    "map.polygon_orientation",
    "reference_line.orientation",
    "static_objects.heading",
)
# keys whose third channel is a heading (x, y, heading)
_POSE3 = ("map.polygon_center", "agent.target", "causal.free_path_points")
# keys with an agent axis (axis 1)
_AGENT_KEYS_PREFIX = "agent."
_CAUSAL_AGENT_KEYS = (
    "causal.leading_agent_mask",
    "causal.leading_distance",
    "causal.interaction_label",
)


@dataclass
class ContrastiveBatch:
    """flat: [anchor | positive | negative] (3B, ...); positive_valid / negative_valid (B,) bool."""

    flat: dict[str, torch.Tensor]
    batch_size: int
    positive_valid: torch.Tensor
    negative_valid: torch.Tensor


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like`` minus its last axis."""
    return v.view(-1, *([1] * (like.dim() - 2)))


def _rotate(xy: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, ..., 2) by per-sample angles given as (B,) cos / sin."""
    c, s = _expand(cos, xy), _expand(sin, xy)
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y], dim=-1)


def recentre(
    flat: dict[str, torch.Tensor], pose: torch.Tensor, history: int, resolution: float
) -> dict[str, torch.Tensor]:
    """The batch expressed in a new ego frame: ``pose`` (B, 3) = new origin x, y and heading in
    the current frame. The ego's present row is moved onto the new pose (so it becomes 0, 0, 0);
    ``reference_line.future_projection`` is recomputed from the ego future; ``cost_maps`` are
    resampled. Returns a new dict (inputs untouched)."""
    out = dict(flat)
    dtype = flat["agent.position"].dtype
    tx, ty, yaw = pose[:, 0].to(dtype), pose[:, 1].to(dtype), pose[:, 2].to(dtype)
    cos, sin = torch.cos(-yaw), torch.sin(-yaw)
    shift = torch.stack([tx, ty], -1)

    pos = flat["agent.position"].clone()
    pos[:, 0, history] = shift
    head = flat["agent.heading"].clone()
    head[:, 0, history] = yaw
    out["agent.position"], out["agent.heading"] = pos, head

    for key in _POINTS:
        if key in out:
            v = out[key]
            xy = _rotate(v[..., :2] - shift.view(-1, *([1] * (v.dim() - 2)), 2), cos, sin)
            out[key] = torch.cat([xy, v[..., 2:]], -1) if v.shape[-1] > 2 else xy
    for key in _VECTORS:
        if key in out:
            v = out[key]
            xy = _rotate(v[..., :2], cos, sin)
            out[key] = torch.cat([xy, v[..., 2:]], -1) if v.shape[-1] > 2 else xy
    for key in _ANGLES:
        if key in out:
            out[key] = wrap_angle(out[key] - yaw.view(-1, *([1] * (out[key].dim() - 1))))
    for key in _POSE3:
        if key in out and out[key].shape[-1] > 2 and key != "agent.target":
            v = out[key]
            h = wrap_angle(v[..., 2] - yaw.view(-1, *([1] * (v.dim() - 2))))
            out[key] = torch.cat([v[..., :2], h[..., None], v[..., 3:]], -1)
    if "agent.target" in out:  # relative to each agent's own present: rotate only (done above);
        # the ego's target is its future in the new frame (its present is the origin)
        target = out["agent.target"].clone()
        f = target.shape[2]
        valid = out["agent.valid_mask"][:, 0, -f:]
        ego = torch.cat(
            [out["agent.position"][:, 0, -f:], out["agent.heading"][:, 0, -f:, None]], -1
        )
        target[:, 0] = ego * valid[..., None]
        out["agent.target"] = target
    if "reference_line.future_projection" in out:
        out["reference_line.future_projection"] = project_future(out, history)
    if "cost_maps" in out:
        out["cost_maps"] = resample_cost_map(flat["cost_maps"], pose, resolution)
    return out


def project_future(flat: dict[str, torch.Tensor], history: int) -> torch.Tensor:
    """(B, R, K, 2) arc length and signed lateral offset (left positive) of the ego future at 1 s
    steps (every 10th future step) on each reference line (points 1 m apart)."""
    proj = flat["reference_line.future_projection"]
    k = proj.shape[2]
    ego = flat["agent.position"][:, 0, history + 1 :]
    steps = torch.arange(1, k + 1, device=ego.device) * (ego.shape[1] // k) - 1
    pts = ego[:, steps]  # (B, K, 2)
    line = flat["reference_line.position"]  # (B, R, L, 2)
    valid = flat["reference_line.valid_mask"]
    diff = pts[:, None, :, None, :] - line[:, :, None]  # (B, R, K, L, 2)
    dist = diff.square().sum(-1).masked_fill(~valid[:, :, None], float("inf"))
    j = dist.argmin(-1)  # (B, R, K)
    gather = j[..., None].expand(*j.shape, 2)
    vec = flat["reference_line.vector"]
    direction = torch.nn.functional.normalize(
        vec[:, :, None].expand(-1, -1, k, -1, -1).gather(3, gather[..., None, :]).squeeze(3),
        dim=-1,
        eps=1e-6,
    )
    near = line[:, :, None].expand(-1, -1, k, -1, -1).gather(3, gather[..., None, :]).squeeze(3)
    rel = pts[:, None] - near
    along = (rel * direction).sum(-1)
    lateral = direction[..., 0] * rel[..., 1] - direction[..., 1] * rel[..., 0]
    s = j.to(rel.dtype) + along  # points are 1 m apart from the line start
    return torch.stack([s, lateral], -1).to(proj.dtype)


def resample_cost_map(
    cost_maps: torch.Tensor, pose: torch.Tensor, resolution: float
) -> torch.Tensor:
    """Cost maps (B, H, W, 1) of the new frame ``pose`` (B, 3), by bilinear resampling (border
    values continue outside the old map). CONTRACT convention: pixel [i, j] centre
    x = (j + 0.5 - W/2) res, y = (H/2 - i - 0.5) res."""
    b, h, w, _ = cost_maps.shape
    res = resolution
    half = w * res / 2
    dev = cost_maps.device
    xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5 - w / 2) * res
    ys = (h / 2 - torch.arange(h, device=dev, dtype=torch.float32) - 0.5) * res
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    p = pose.float()
    c, s = torch.cos(p[:, 2]).view(-1, 1, 1), torch.sin(p[:, 2]).view(-1, 1, 1)
    ox = c * gx - s * gy + p[:, 0].view(-1, 1, 1)
    oy = s * gx + c * gy + p[:, 1].view(-1, 1, 1)
    grid = torch.stack([ox / half, -oy / half], -1)  # (B, H, W, 2)
    image = cost_maps.permute(0, 3, 1, 2).float()
    out = torch.nn.functional.grid_sample(
        image, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.permute(0, 2, 3, 1).to(cost_maps.dtype)


def _uniform(b: int, bounds: tuple[float, ...], device: torch.device) -> torch.Tensor:
    scale = torch.tensor(bounds, device=device)
    return (torch.rand(b, len(bounds), device=device) * 2 - 1) * scale


def _collision_free(
    flat: dict[str, torch.Tensor], noise: torch.Tensor, history: int, resolution: float
) -> torch.Tensor:
    """(B,) the perturbed present ego (circles) overlaps no valid agent and stays on the drivable
    area (when a cost map is present)."""
    b = noise.shape[0]
    traj = torch.stack(
        [noise[:, 0], noise[:, 1], torch.cos(noise[:, 2]), torch.sin(noise[:, 2])], -1
    )[:, None]
    centres, radius = ego_circles(traj)  # (B, 1, 3, 2)
    centres = centres[:, 0]
    ok = torch.ones(b, dtype=torch.bool, device=noise.device)
    pos = flat["agent.position"][:, 1:, history]  # (B, A-1, 2)
    valid = flat["agent.valid_mask"][:, 1:, history]
    reach = flat["agent.shape"][:, 1:, history].norm(dim=-1) / 2 + radius  # (B, A-1)
    d = (pos[:, :, None] - centres[:, None]).norm(dim=-1).amin(-1)
    ok &= ~((d < reach) & valid).any(-1)
    if "cost_maps" in flat:
        sdf = sample_cost_map(flat["cost_maps"], centres, resolution)
        start = sample_cost_map(flat["cost_maps"], torch.zeros_like(centres[:, :1]), resolution)
        ok &= (sdf > radius).all(-1) | (start[:, 0] <= 0)  # already off-road: do not demand it
    return ok


def make_positive(
    flat: dict[str, torch.Tensor], history: int, resolution: float, drop_probability: float
) -> dict[str, torch.Tensor]:
    """The re-centred, state-perturbed positives (see the module doc)."""
    b = flat["agent.position"].shape[0]
    dev = flat["agent.position"].device
    noise = _uniform(b, STATE_NOISE, dev)
    noise = noise * _collision_free(flat, noise, history, resolution)[:, None]
    out = recentre(flat, noise[:, :3], history, resolution)
    state = flat["current_state"].clone()
    state[:, 3:] = state[:, 3:] + noise[:, 3:].to(state.dtype)
    state[:, 3] = state[:, 3].clamp(min=0.0)
    state[:, :3] = 0.0
    out["current_state"] = state
    if "causal.interaction_label" in flat:
        drop = torch.rand(b, device=dev) < drop_probability
        keep = flat["causal.interaction_label"].bool() | ~drop[:, None]
        keep[:, 0] = True
        out["agent.valid_mask"] = flat["agent.valid_mask"] & keep[..., None]
    return out


def _pad_agents(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One more (padding) row on every agent axis."""
    out = dict(flat)
    for key, v in flat.items():
        if key.startswith(_AGENT_KEYS_PREFIX) or key in _CAUSAL_AGENT_KEYS:
            pad = torch.zeros_like(v[:, :1])
            out[key] = torch.cat([v, pad], 1)
    return out


def make_negative(
    flat: dict[str, torch.Tensor], history: int, kinds: list[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One applicable causal change per sample (``flat`` already has a free last agent row);
    returns the negatives and (B,) whether each sample got one."""
    b, a = flat["agent.valid_mask"].shape[:2]
    dev = flat["agent.valid_mask"].device
    present_valid = flat["agent.valid_mask"][:, :, history]
    zero = torch.zeros(b, dtype=torch.bool, device=dev)
    leading = flat.get("causal.leading_agent_mask")
    interact = flat.get("causal.interaction_label")
    applicable = {}
    if leading is not None:
        lead = leading.bool() & present_valid
        applicable["drop_leading"] = lead.any(-1)
    if interact is not None:
        inter = interact.bool() & present_valid
        inter[:, 0] = False
        applicable["drop_interacting"] = inter.any(-1)
    care = flat.get("causal.ego_care_red_light_mask")
    waiting = flat.get("causal.is_waiting_for_red_light_without_lead")
    if care is not None and waiting is not None and "map.polygon_tl_status" in flat:
        applicable["red_light_to_green"] = waiting.bool().view(b) & care.bool().any(-1)
    free = flat.get("causal.free_path_points")
    if free is not None:
        free_valid = flat.get("causal.free_path_valid_mask")
        if free_valid is None:
            free_valid = free[..., :2].abs().sum(-1) > 0
        dist = free[..., :2].norm(dim=-1)
        in_range = free_valid.bool() & (dist >= INSERT_RANGE_M[0]) & (dist <= INSERT_RANGE_M[1])
        no_lead = ~applicable.get("drop_leading", zero)
        applicable["insert_leading"] = in_range.any(-1) & no_lead
    names = [k for k in kinds if k in applicable]
    if not names:
        return dict(flat), zero
    can = torch.stack([applicable[k] for k in names], -1)  # (B, K)
    score = torch.rand(can.shape, device=dev).masked_fill(~can, -1.0)
    choice = score.argmax(-1)
    has = can.any(-1)
    out = dict(flat)
    valid_mask = flat["agent.valid_mask"].clone()
    for i, kind in enumerate(names):
        pick = has & (choice == i)
        if not pick.any():
            continue
        if kind == "drop_leading":
            valid_mask &= ~(pick[:, None] & leading.bool())[..., None]
        elif kind == "drop_interacting":
            inter = interact.bool().clone()
            inter[:, 0] = False
            valid_mask &= ~(pick[:, None] & inter)[..., None]
        elif kind == "red_light_to_green":
            status = out["map.polygon_tl_status"].clone()
            flip = pick[:, None] & care.bool()
            out["map.polygon_tl_status"] = torch.where(
                flip, torch.full_like(status, int(TrafficLightStatus.GREEN)), status
            )
        elif kind == "insert_leading":
            out, valid_mask = _insert_leading(out, valid_mask, pick, in_range, free, history)
    out["agent.valid_mask"] = valid_mask
    return out, has


def _insert_leading(
    flat: dict[str, torch.Tensor],
    valid_mask: torch.Tensor,
    pick: torch.Tensor,
    in_range: torch.Tensor,
    free: torch.Tensor,
    history: int,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A stopped vehicle at a random in-range free-path point, in the last (padding) agent row."""
    out = dict(flat)
    b, n = in_range.shape
    score = torch.rand(b, n, device=free.device).masked_fill(~in_range, -1.0)
    idx = score.argmax(-1)
    point = free[torch.arange(b, device=free.device), idx]  # (B, >=2)
    nxt = free[torch.arange(b, device=free.device), (idx + 1).clamp(max=n - 1)]
    prv = free[torch.arange(b, device=free.device), (idx - 1).clamp(min=0)]
    heading = torch.atan2(nxt[:, 1] - prv[:, 1], nxt[:, 0] - prv[:, 0])
    t = valid_mask.shape[2]
    sel = pick.view(b, 1)

    def put(key: str, value: torch.Tensor) -> None:
        v = out[key].clone()
        row = v[:, -1]
        v[:, -1] = torch.where(sel.view(b, *([1] * (row.dim() - 1))), value.to(v.dtype), row)
        out[key] = v

    put("agent.position", point[:, None, :2].expand(b, t, 2))
    put("agent.heading", heading[:, None].expand(b, t))
    put("agent.velocity", torch.zeros(b, t, 2, device=free.device))
    shape = torch.tensor(INSERTED_SHAPE, device=free.device)
    put("agent.shape", shape.expand(b, t, 2))
    put("agent.category", torch.full((b,), int(AgentCategory.VEHICLE), device=free.device))
    if "agent.target" in out:
        put("agent.target", torch.zeros_like(out["agent.target"][:, -1]))
    for key in _CAUSAL_AGENT_KEYS:
        if key in out and out[key].dtype == torch.bool:
            put(key, torch.ones(b, dtype=torch.bool, device=free.device))
    valid_mask[:, -1] = torch.where(sel, torch.ones_like(valid_mask[:, -1]), valid_mask[:, -1])
    return out, valid_mask


def make_contrastive_batch(
    flat: dict[str, torch.Tensor],
    history: int,
    resolution: float,
    kinds: list[str],
    positive_probability: float = 1.0,
    drop_non_interacting_probability: float = 0.5,
) -> ContrastiveBatch:
    """[anchor | positive | negative] along B (see the module doc)."""
    flat = _pad_agents({k: v for k, v in flat.items()})
    b = flat["agent.position"].shape[0]
    positive = make_positive(flat, history, resolution, drop_non_interacting_probability)
    use = torch.rand(b, device=flat["agent.position"].device) < positive_probability
    negative, negative_valid = make_negative(flat, history, kinds)
    cat = {key: torch.cat([flat[key], positive[key], negative[key]], 0) for key in flat}
    return ContrastiveBatch(cat, b, use, negative_valid)
