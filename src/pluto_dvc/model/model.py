"""The PLUTO planning network (spec section 3) in plain PyTorch, readable top to bottom.

    model = PlutoModel(ModelConfig.preset("small"))
    out = model(batch)        # PlutoBatch -> PlutoOutput

Order of this file: building blocks (MLP, attention, drop path, Fourier embedding, PointNet,
1-D neighbourhood attention), then the encoders (agent history pyramid, ego state, map, static
objects), the scene encoder, the planning decoder, the heads, and the model that wires them.
Frame: every position is in the ego rear-axle frame at the present step (metres, radians).
Padding (agents, polygons, lines, static objects beyond a sample's own count) never changes the
outputs of real entries: padded tokens are masked as attention keys and per-object encoders
see only the valid points of their own object.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pluto_dvc.model.batch import BatchError, PlutoBatch
from pluto_dvc.model.config import (
    NUM_AGENT_TYPES,
    NUM_POLYGON_TYPES,
    NUM_STATIC_TYPES,
    NUM_TL_STATES,
    ModelConfig,
)
from pluto_dvc.model.output import PlutoOutput

# ---------------------------------------------------------------------------------------------
# Building blocks


class MLP(nn.Sequential):
    """Linear -> LayerNorm -> ReLU -> Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )


class FeedForward(nn.Sequential):
    """The transformer feed-forward block: Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, ratio: float, dropout: float = 0.0):
        hidden = int(dim * ratio)
        super().__init__(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch per sample with probability p."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head attention (self or cross) on ``F.scaled_dot_product_attention``.

    ``key_padding``: (B, Nk) bool, True where a key is padding (never attended to).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None = None) -> Tensor:
        b, nq, d = q.shape
        h = self.num_heads
        q = self.q(q).view(b, nq, h, d // h).transpose(1, 2)
        nk = k.shape[1]
        k = self.k(k).view(b, nk, h, d // h).transpose(1, 2)
        v = self.v(v).view(b, nk, h, d // h).transpose(1, 2)
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        drop = self.dropout if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.out_drop(self.out(x.transpose(1, 2).reshape(b, nq, d)))


class TransformerLayer(nn.Module):
    """Pre-norm self-attention layer with stochastic depth (the scene encoder's block)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, key_padding: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attn(h, h, h, key_padding))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FourierEmbedding(nn.Module):
    """Learned-frequency Fourier features of C scalar inputs, summed into one ``dim`` vector.

    Each input x_c becomes [cos(2 pi f_c x_c), sin(2 pi f_c x_c), x_c] over ``bands`` learned
    frequencies f_c, goes through its own Linear -> LayerNorm -> ReLU -> Linear, the C results
    are summed, then LayerNorm -> ReLU -> Linear. (The per-input MLPs run as one batched einsum.)
    """

    def __init__(self, in_dim: int, dim: int, bands: int):
        super().__init__()
        width = 2 * bands + 1
        self.freqs = nn.Parameter(torch.randn(in_dim, bands))
        self.w1 = nn.Parameter(torch.empty(in_dim, width, dim))
        self.b1 = nn.Parameter(torch.zeros(in_dim, dim))
        self.norm_w = nn.Parameter(torch.ones(in_dim, dim))
        self.norm_b = nn.Parameter(torch.zeros(in_dim, dim))
        self.w2 = nn.Parameter(torch.empty(in_dim, dim, dim))
        self.b2 = nn.Parameter(torch.zeros(in_dim, dim))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim))
        nn.init.trunc_normal_(self.w1, std=0.02)
        nn.init.trunc_normal_(self.w2, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        f = x[..., None] * self.freqs * (2 * math.pi)  # (..., C, bands)
        feats = torch.cat([f.cos(), f.sin(), x[..., None]], dim=-1)  # (..., C, 2 bands + 1)
        h = torch.einsum("...ci,cid->...cd", feats, self.w1) + self.b1
        h = F.layer_norm(h, h.shape[-1:]) * self.norm_w + self.norm_b
        h = torch.einsum("...ci,cid->...cd", F.relu(h), self.w2) + self.b2
        return self.out(h.sum(-2))


class PointNet(nn.Module):
    """Encodes a set of points per object into one vector (PointNet with a global-feature skip).

    Only valid points are computed: per point MLP -> max over the object's points -> concatenated
    back to every point -> MLP -> max. Objects without a valid point get zeros.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.first = MLP(in_dim, dim, 2 * dim)
        self.second = MLP(4 * dim, 2 * dim, dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x: (..., P, C_in), valid: (..., P) bool -> (..., dim)."""
        objects = valid.reshape(-1, valid.shape[-1])  # (n, P)
        owner = objects.nonzero()[:, 0]  # the object of each valid point, in x[valid] order
        empty = ~objects.any(-1, keepdim=True)
        h = self.first(x[valid])  # (N valid points, 2 dim)
        pooled = segment_max(h, owner, len(objects)).masked_fill(empty, 0.0)
        # second(cat([h, pooled[owner]])) with the first Linear split in two: its pooled half
        # runs once per object instead of once per point
        first, *rest = self.second
        width = h.shape[-1]
        h = F.linear(h, first.weight[:, :width], first.bias)
        h = h + F.linear(pooled, first.weight[:, width:])[owner]
        for layer in rest:
            h = layer(h)
        out = segment_max(h, owner, len(objects)).masked_fill(empty, 0.0)
        return out.view(*valid.shape[:-1], -1)


def segment_max(values: Tensor, owner: Tensor, count: int) -> Tensor:
    """(count, C) maximum of the rows of ``values`` (N, C) per ``owner`` (N,); -inf if none."""
    out = values.new_full((count, values.shape[-1]), float("-inf"))
    index = owner[:, None].expand_as(values)
    return out.scatter_reduce(0, index, values, "amax", include_self=True)


def neighborhood_bias(length: int, kernel: int, rpb: Tensor) -> Tensor:
    """(heads, L, L) additive attention bias of 1-D neighbourhood attention.

    Query i attends to the k = ``kernel`` keys [s_i, s_i + k) with s_i = i - (k - 1) / 2 clamped
    to [0, L - k] (the window shifts inward at the borders); key j gets the learned relative
    position bias ``rpb[:, j - i + k - 1]`` (``rpb``: (heads, 2k - 1)); keys outside the window
    get -inf. Needs L >= k (callers right-pad shorter sequences).
    """
    i = torch.arange(length, device=rpb.device)
    start = (i - (kernel - 1) // 2).clamp(0, length - kernel)  # (L,)
    j = i[None, :]  # (1, L) keys
    inside = (j >= start[:, None]) & (j < start[:, None] + kernel)  # (L, L)
    rel = (j - i[:, None] + kernel - 1).clamp(0, 2 * kernel - 2)
    bias = rpb[:, rel]  # (heads, L, L)
    return bias.masked_fill(~inside, float("-inf"))


class NeighborhoodAttention1D(nn.Module):
    """1-D neighbourhood attention (the semantics of NATTEN's ``NeighborhoodAttention1D``).

    Each step attends to a window of ``kernel`` steps around it, shifted inward at the borders,
    with a learned relative-position bias per head (length 2k - 1). A sequence shorter than the
    kernel is right-padded with zeros to ``kernel`` steps (the pads take part as keys) and the
    output cropped back. The window is expressed as an additive bias on full attention, which
    for the short agent histories (<= 20 steps) is faster than gathering windows (and, on CPU,
    than ``scaled_dot_product_attention`` with a float mask).
    """

    def __init__(self, dim: int, num_heads: int, kernel: int):
        super().__init__()
        self.num_heads = num_heads
        self.kernel = kernel
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel - 1))
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.rpb, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, L, dim) -> (N, L, dim)."""
        n, length, d = x.shape
        padded = max(length, self.kernel)
        if padded > length:
            x = F.pad(x, (0, 0, 0, padded - length))
        h = self.num_heads
        q, k, v = self.qkv(x).view(n, padded, 3, h, d // h).unbind(2)  # (N, L, h, d/h) each
        scores = torch.einsum("nihc,njhc->nhij", q * (d // h) ** -0.5, k)
        scores = scores + neighborhood_bias(padded, self.kernel, self.rpb).to(q.dtype)
        out = torch.einsum("nhij,njhc->nihc", scores.softmax(-1), v)
        return self.proj(out.reshape(n, padded, d))[:, :length]


class NeighborhoodLayer(nn.Module):
    """Pre-norm neighbourhood-attention transformer layer with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, kernel: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention1D(dim, num_heads, kernel)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------------------
# Encoders


class HistoryEncoder(nn.Module):
    """Agent history -> one vector per agent: a 1-D neighbourhood-attention pyramid + FPN merge.

    Input (N, L, 9) per-step features (L = history steps - 1). A conv embeds them to the first
    level's width; each level runs its neighbourhood-attention layers, then a stride-2 conv halves
    the length into the next level's width (20 -> 10 -> 5 for the paper's three levels). The
    feature pyramid merges top-down (1x1 lateral convs to ``dim``, linear upsampling, sum), a
    3-tap conv smooths the finest level, and its last step (the present) is the agent's encoding.
    """

    def __init__(self, config: ModelConfig, drop_path: list[float]):
        super().__init__()
        dims, c = config.history_dims, config
        self.embed = nn.Conv1d(9, dims[0], 3, padding=1)
        self.embed_norm = nn.LayerNorm(dims[0])
        self.levels = nn.ModuleList()
        self.downsample = nn.ModuleList()
        self.out_norms = nn.ModuleList()
        layer = 0
        for i, (width, depth, heads, kernel) in enumerate(
            zip(dims, c.history_depths, c.history_heads, c.history_kernels, strict=True)
        ):
            self.levels.append(
                nn.Sequential(
                    *(
                        NeighborhoodLayer(
                            width, heads, kernel, c.history_mlp_ratio, drop_path[layer + j]
                        )
                        for j in range(depth)
                    )
                )
            )
            layer += depth
            self.out_norms.append(nn.LayerNorm(width))
            if i + 1 < len(dims):
                self.downsample.append(nn.Conv1d(width, dims[i + 1], 3, stride=2, padding=1))
        self.down_norms = nn.ModuleList(nn.LayerNorm(w) for w in dims[1:])
        self.lateral = nn.ModuleList(nn.Conv1d(w, config.dim, 1) for w in dims)
        self.smooth = nn.Conv1d(config.dim, config.dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, L, 9) -> (N, dim)."""
        x = self.embed_norm(self.embed(x.transpose(1, 2)).transpose(1, 2))  # (N, L, C0)
        pyramid = []
        for i, level in enumerate(self.levels):
            x = level(x)
            pyramid.append(self.out_norms[i](x))
            if i < len(self.downsample):
                x = self.downsample[i](x.transpose(1, 2)).transpose(1, 2)
                x = self.down_norms[i](x)
        merged = self.lateral[-1](pyramid[-1].transpose(1, 2))  # (N, dim, L_top)
        for i in range(len(pyramid) - 2, -1, -1):
            lateral = self.lateral[i](pyramid[i].transpose(1, 2))
            up = F.interpolate(merged, size=lateral.shape[-1], mode="linear", align_corners=False)
            merged = lateral + up
        # the smoothing conv at the last step only (3 taps: the last two steps and the zero pad)
        return self.smooth(merged[..., -2:])[..., -1]


def history_features(batch: PlutoBatch, steps: int) -> tuple[Tensor, Tensor]:
    """(B, A, steps - 1, 9) per-step history features and (B, A) "has a valid history step".

    Channels: delta position (2) and delta velocity (2), zero where either step is invalid;
    cos, sin of the delta heading (1, 0 where invalid); width, length of the later step (2);
    validity of the step pair (1)."""
    a = batch.agent
    pos, vel = a.position[:, :, :steps], a.velocity[:, :, :steps]
    heading, valid = a.heading[:, :, :steps], a.valid_mask[:, :, :steps]
    pair = (valid[..., 1:] & valid[..., :-1])[..., None]
    d_pos = (pos[..., 1:, :] - pos[..., :-1, :]) * pair
    d_vel = (vel[..., 1:, :] - vel[..., :-1, :]) * pair
    d_heading = (heading[..., 1:] - heading[..., :-1])[..., None]
    cos = torch.where(pair, d_heading.cos(), torch.ones_like(d_heading))
    sin = torch.where(pair, d_heading.sin(), torch.zeros_like(d_heading))
    shape = a.shape[:, :, 1:steps]
    feats = torch.cat([d_pos, d_vel, cos, sin, shape, pair.to(pos.dtype)], dim=-1)
    return feats, valid.any(-1)


class EgoStateEncoder(nn.Module):
    """The ego's present state (x, y, yaw, v, a, steer) -> one vector, by a learned query
    attending over one token per scalar. In training v, a and steer are each hidden (masked
    keys) with probability ``state_dropout``, so the planner cannot just extrapolate them."""

    NUM_STATES = 6
    DROPPABLE = (3, 4, 5)

    def __init__(self, dim: int, num_heads: int, state_dropout: float):
        super().__init__()
        self.state_dropout = state_dropout
        self.scale = nn.Parameter(torch.empty(self.NUM_STATES, dim))  # per-scalar Linear(1, dim)
        self.shift = nn.Parameter(torch.zeros(self.NUM_STATES, dim))
        self.state_pos = nn.Parameter(torch.empty(1, self.NUM_STATES, dim))
        self.query = nn.Parameter(torch.empty(1, 1, dim))
        self.attn = Attention(dim, num_heads)
        for p in (self.scale, self.state_pos, self.query):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, state: Tensor) -> Tensor:
        """state: (B, 6) -> (B, dim)."""
        tokens = state[..., None] * self.scale + self.shift + self.state_pos  # (B, 6, dim)
        hidden = torch.zeros_like(state, dtype=torch.bool)
        if self.training and self.state_dropout > 0:
            drop = torch.rand(state.shape[0], len(self.DROPPABLE), device=state.device)
            hidden[:, list(self.DROPPABLE)] = drop < self.state_dropout
        query = self.query.expand(state.shape[0], -1, -1)
        return self.attn(query, tokens, tokens, hidden)[:, 0]


class MapEncoder(nn.Module):
    """Map polygons -> one vector each: PointNet over the centreline points (10 channels per
    point, relative to the polygon centre) + type, on-route, traffic-light and speed-limit
    embeddings (a learned "unknown" vector when a polygon has no speed limit)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.dim
        self.points = PointNet(10, dim)
        self.type_emb = nn.Embedding(NUM_POLYGON_TYPES, dim)
        self.on_route_emb = nn.Embedding(2, dim)
        self.tl_emb = nn.Embedding(NUM_TL_STATES, dim)
        self.speed_limit_emb = FourierEmbedding(1, dim, config.fourier_bands)
        self.unknown_speed_limit = nn.Parameter(torch.zeros(dim))

    def forward(self, batch: PlutoBatch) -> tuple[Tensor, Tensor]:
        """-> tokens (B, M, dim), valid (B, M) bool."""
        m = batch.map
        center = m.point_position[:, :, 0]  # (B, M, P, 2)
        orientation = m.point_orientation[:, :, 0]
        feats = torch.cat(
            [
                center - m.polygon_center[:, :, None, :2],
                m.point_vector[:, :, 0],
                orientation.cos()[..., None],
                orientation.sin()[..., None],
                m.point_position[:, :, 1] - center,
                m.point_position[:, :, 2] - center,
            ],
            dim=-1,
        )
        x = self.points(feats, m.valid_mask)
        x = x + self.type_emb(m.polygon_type.long())
        x = x + self.on_route_emb(m.polygon_on_route.long())
        x = x + self.tl_emb(m.polygon_tl_status.long())
        speed = self.speed_limit_emb(m.polygon_speed_limit[..., None])
        has = m.polygon_has_speed_limit[..., None]
        x = x + torch.where(has, speed, self.unknown_speed_limit)
        return x, m.valid_mask.any(-1)


class StaticObjectEncoder(nn.Module):
    """Static objects -> Fourier embedding of (width, length) + a type embedding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.shape_emb = FourierEmbedding(2, config.dim, config.fourier_bands)
        self.type_emb = nn.Embedding(NUM_STATIC_TYPES, config.dim)

    def forward(self, batch: PlutoBatch) -> tuple[Tensor, Tensor]:
        s = batch.static_objects
        return self.shape_emb(s.shape) + self.type_emb(s.category.long()), s.valid_mask


def pose(xy: Tensor, heading: Tensor) -> Tensor:
    """(..., 3) x, y, heading wrapped to [-pi, pi): the input of the positional embeddings."""
    wrapped = torch.remainder(heading + math.pi, 2 * math.pi) - math.pi
    return torch.cat([xy, wrapped[..., None]], dim=-1)


# ---------------------------------------------------------------------------------------------
# Planning decoder


class DecoderLayer(nn.Module):
    """One planning-decoder layer over the (B, R, M, dim) queries, pre-norm, with dropout:
    self-attention across reference lines (per mode), self-attention across modes (per line,
    the mode positional embedding added to queries and keys), cross-attention to the scene
    tokens, feed-forward."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm_lines = nn.LayerNorm(dim)
        self.across_lines = Attention(dim, num_heads, dropout)
        self.norm_modes = nn.LayerNorm(dim)
        self.across_modes = Attention(dim, num_heads, dropout)
        self.norm_scene = nn.LayerNorm(dim)
        self.to_scene = Attention(dim, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio, dropout)

    def forward(
        self,
        x: Tensor,
        line_padding: Tensor,
        mode_pos: Tensor,
        scene: Tensor,
        scene_padding: Tensor,
    ) -> Tensor:
        b, r, m, d = x.shape
        # across lines: sequences of R lines, one per (sample, mode)
        h = self.norm_lines(x).transpose(1, 2).reshape(b * m, r, d)
        pad = line_padding[:, None].expand(b, m, r).reshape(b * m, r)
        x = x + self.across_lines(h, h, h, pad).view(b, m, r, d).transpose(1, 2)
        # across modes: sequences of M modes, one per (sample, line)
        h = self.norm_modes(x).reshape(b * r, m, d)
        qk = h + mode_pos
        x = x + self.across_modes(qk, qk, h).view(b, r, m, d)
        # to the scene: all R x M queries of a sample attend to its scene tokens
        h = self.norm_scene(x).reshape(b, r * m, d)
        x = x + self.to_scene(h, scene, scene, scene_padding).view(b, r, m, d)
        return x + self.mlp(self.norm_mlp(x))


class TrajectoryHead(nn.Module):
    """Token -> F steps of (x, y, cos, sin, vx, vy): one MLP each for positions, heading and
    velocity. Positions and velocities come out in units of ``scale`` metres (m/s): targets
    tens of metres away are then within a few hundred optimiser steps of a fresh network."""

    def __init__(self, dim: int, steps: int, scale: float = 1.0):
        super().__init__()
        self.steps = steps
        self.scale = scale
        self.position = MLP(dim, 2 * dim, 2 * steps)
        self.heading = MLP(dim, 2 * dim, 2 * steps)
        self.velocity = MLP(dim, 2 * dim, 2 * steps)

    def forward(self, x: Tensor) -> Tensor:
        shape = (*x.shape[:-1], self.steps, 2)
        position = self.position(x).view(shape) * self.scale
        velocity = self.velocity(x).view(shape) * self.scale
        return torch.cat([position, self.heading(x).view(shape), velocity], dim=-1)


class PlanningDecoder(nn.Module):
    """Queries = reference lines x modes -> trajectories (B, R, M, F, 6) and score logits.

    A reference line is encoded by a PointNet over its valid points (point minus first point,
    vector, cos, sin of orientation) plus a Fourier embedding of its first point's pose; a
    query is the projection of [line encoding, learned mode embedding], plus the encoded ego
    token when ``config.ego_query`` (every query then sees the ego state directly, not only
    through cross-attention). Padded lines are masked
    as keys when attending across lines (a sample without any valid line masks nothing, so its
    outputs stay finite; they are never used: ``PlutoOutput.best_trajectory``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.dim
        self.line_points = PointNet(6, dim)
        self.line_pos_emb = FourierEmbedding(3, dim, config.fourier_bands)
        self.mode_emb = nn.Parameter(torch.empty(1, 1, config.num_modes, dim))
        self.mode_pos = nn.Parameter(torch.empty(1, config.num_modes, dim))
        self.query_proj = nn.Linear(2 * dim, dim)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, config.num_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.decoder_depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.ego_query = config.ego_query
        self.trajectory_head = TrajectoryHead(dim, config.future_steps, config.output_scale_m)
        self.score_head = MLP(dim, 2 * dim, 1)
        nn.init.trunc_normal_(self.mode_emb, std=0.02)
        nn.init.trunc_normal_(self.mode_pos, std=0.02)

    def forward(
        self, batch: PlutoBatch, scene: Tensor, scene_padding: Tensor
    ) -> tuple[Tensor, Tensor]:
        lines = batch.reference_line
        valid = lines.valid_mask  # (B, R, L)
        start = lines.position[:, :, :1]
        feats = torch.cat(
            [
                lines.position - start,
                lines.vector,
                lines.orientation.cos()[..., None],
                lines.orientation.sin()[..., None],
            ],
            dim=-1,
        )
        x = self.line_points(feats, valid)
        x = x + self.line_pos_emb(pose(lines.position[:, :, 0], lines.orientation[:, :, 0]))
        b, r, d = x.shape
        m = self.mode_emb.shape[2]
        query = torch.cat([x[:, :, None].expand(b, r, m, d), self.mode_emb.expand(b, r, m, d)], -1)
        x = self.query_proj(query)  # (B, R, M, dim)
        if self.ego_query:
            x = x + scene[:, 0, None, None]  # the ego is scene token 0
        line_valid = valid.any(-1)
        line_padding = ~line_valid & line_valid.any(-1, keepdim=True)
        for layer in self.layers:
            x = layer(x, line_padding, self.mode_pos, scene, scene_padding)
        x = self.norm(x)
        return self.trajectory_head(x), self.score_head(x)[..., 0]


# ---------------------------------------------------------------------------------------------
# The model


class PlutoModel(nn.Module):
    """PLUTO: scene encoder over [agents | map polygons | static objects] + planning decoder.

    ``forward(batch) -> PlutoOutput``. Train mode applies state dropout, dropout and stochastic
    depth; eval mode is deterministic.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        history_layers = sum(c.history_depths)
        self.history_encoder = HistoryEncoder(
            c, torch.linspace(0, c.drop_path, history_layers).tolist()
        )
        self.ego_encoder = EgoStateEncoder(c.dim, c.num_heads, c.state_dropout)
        self.agent_type_emb = nn.Embedding(NUM_AGENT_TYPES, c.dim)
        self.map_encoder = MapEncoder(c)
        self.static_encoder = StaticObjectEncoder(c)
        self.pos_emb = FourierEmbedding(3, c.dim, c.fourier_bands)
        self.encoder = nn.ModuleList(
            TransformerLayer(c.dim, c.num_heads, c.mlp_ratio, p)
            for p in torch.linspace(0, c.drop_path, c.encoder_depth).tolist()
        )
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.decoder = PlanningDecoder(c)
        self.prediction_head = TrajectoryHead(c.dim, c.future_steps, c.output_scale_m)
        self.ref_free_head = MLP(c.dim, 2 * c.dim, 4 * c.future_steps) if c.ref_free_head else None
        self.hidden_proj = (
            nn.Sequential(nn.Linear(c.dim, c.dim), nn.ReLU(), nn.Linear(c.dim, c.dim))
            if c.hidden_proj
            else None
        )
        self.apply(_init_weights)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def check_batch(self, batch: PlutoBatch) -> None:
        """Refuse a batch whose data-fixed sizes differ from the config (clear message)."""
        c = self.config
        t, f = batch.agent.position.shape[2], batch.agent.target.shape[2]
        p = batch.map.point_position.shape[3]
        problems = []
        if f != c.future_steps or t != c.history_steps + c.future_steps:
            problems.append(
                f"agent steps {t} (future {f}), model expects {c.history_steps} history + "
                f"{c.future_steps} future"
            )
        if p != c.polyline_points:
            problems.append(f"{p} points per polyline, model expects {c.polyline_points}")
        lines = batch.reference_line
        if lines is not None and lines.position.shape[2] != c.reference_line_points:
            problems.append(
                f"{lines.position.shape[2]} points per reference line, model expects "
                f"{c.reference_line_points}"
            )
        if lines is None and self.ref_free_head is None:
            problems.append("no reference lines and no reference-free head")
        if problems:
            raise BatchError(
                "the batch does not have the model's feature layout: " + "; ".join(problems)
            )

    def forward(self, batch: PlutoBatch) -> PlutoOutput:
        c = self.config
        self.check_batch(batch)
        agent = batch.agent
        b, a = agent.category.shape
        present = c.history_steps - 1

        # agents: history pyramid on agents with a valid history step; the ego row replaced
        # by its state encoding; + type embedding
        feats, agent_valid = history_features(batch, c.history_steps)
        agent_valid[:, 0] = True  # the ego token always takes part
        others = agent_valid.clone()
        others[:, 0] = False
        history = self.history_encoder(feats[others])
        x_agent = history.new_zeros(b, a, c.dim)  # (dtype of the encoder under autocast)
        x_agent[others] = history
        x_agent[:, 0] = self.ego_encoder(batch.current_state[:, :6]).to(history.dtype)
        x_agent = x_agent + self.agent_type_emb(agent.category.long())
        agent_pose = pose(agent.position[:, :, present], agent.heading[:, :, present])

        # map polygons and static objects
        x_map, map_valid = self.map_encoder(batch)
        map_pose = batch.map.polygon_center
        tokens, poses, valids = [x_agent, x_map], [agent_pose, map_pose], [agent_valid, map_valid]
        if batch.static_objects is not None:
            x_static, static_valid = self.static_encoder(batch)
            s = batch.static_objects
            tokens.append(x_static)
            poses.append(pose(s.position, s.heading))
            valids.append(static_valid)

        # scene encoder
        x = torch.cat(tokens, dim=1) + self.pos_emb(torch.cat(poses, dim=1))
        padding = ~torch.cat(valids, dim=1)
        for layer in self.encoder:
            x = layer(x, padding)
        x = self.encoder_norm(x)

        # planning decoder and heads
        if batch.reference_line is not None and batch.reference_line.position.shape[1] > 0:
            trajectory, probability = self.decoder(batch, x, padding)
        else:
            trajectory = x.new_zeros(b, 0, c.num_modes, c.future_steps, 6)  # no line at all
            probability = x.new_zeros(b, 0, c.num_modes)
        prediction = self.prediction_head(x[:, 1:a])
        prediction = torch.cat(
            [prediction[..., :2] + agent.position[:, 1:, present, None], prediction[..., 2:]], -1
        )
        ref_free = None
        if self.ref_free_head is not None:
            ref_free = self.ref_free_head(x[:, 0]).view(b, c.future_steps, 4)
            ref_free = torch.cat([ref_free[..., :2] * c.output_scale_m, ref_free[..., 2:]], -1)
        hidden = None if self.hidden_proj is None else self.hidden_proj(x[:, 0])
        return PlutoOutput(trajectory, probability, prediction, ref_free, hidden)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
