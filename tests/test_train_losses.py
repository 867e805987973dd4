"""Training targets, losses, metrics and the optimiser: pure functions on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from pluto_dvc.training import losses
from pluto_dvc.training.metrics import planning_metrics
from pluto_dvc.training.optim import lr_factor, parameter_groups
from pluto_dvc.training.targets import constant_velocity, future_states, select_target


def test_select_target_takes_smallest_lateral_among_valid_lines_and_bins_arc_length():
    proj = torch.zeros(2, 3, 8, 2)
    # sample 0: 80 valid steps -> endpoint 7; line 1 nearest (|d| 0.5), line 2 closer but padded
    proj[0, :, 7] = torch.tensor([[50.0, 3.0], [35.0, -0.5], [80.0, 0.1]])
    # sample 1: 25 valid steps -> endpoint 2; line 0 nearest
    proj[1, :, 2] = torch.tensor([[12.0, 0.2], [12.0, -1.0], [0.0, 9.0]])
    line_valid = torch.tensor([[True, True, False], [True, True, True]])
    ego_valid = torch.zeros(2, 80, dtype=torch.bool)
    ego_valid[0] = True
    ego_valid[1, :25] = True
    q = select_target(proj, line_valid, ego_valid, num_modes=12, mode_length_m=120.0)
    assert q.line.tolist() == [1, 0]
    assert q.mode.tolist() == [3, 1]  # floor(35 / 10), floor(12 / 10)
    assert q.has_line.tolist() == [True, True]


def test_select_target_clamps_mode_and_flags_samples_without_lines():
    proj = torch.zeros(2, 1, 8, 2)
    proj[0, 0, 7, 0] = 500.0
    proj[1, 0, 7, 0] = -3.0
    q = select_target(
        proj, torch.tensor([[True], [False]]), torch.ones(2, 80, dtype=torch.bool), 6, 120.0
    )
    assert q.mode.tolist() == [5, 0]
    assert q.has_line.tolist() == [True, False]


def test_future_states_channels_and_mask():
    b, a, t, f = 1, 2, 5, 3
    pos = torch.arange(b * a * t * 2, dtype=torch.float32).view(b, a, t, 2)
    heading = torch.full((b, a, t), math.pi / 2)
    vel = torch.ones(b, a, t, 2)
    valid = torch.ones(b, a, t, dtype=torch.bool)
    valid[0, 1, -1] = False
    states, v = future_states(pos, heading, vel, valid, f)
    assert states.shape == (1, 2, 3, 6)
    assert torch.allclose(states[0, 0, 0], torch.tensor([4.0, 5.0, 0.0, 1.0, 1.0, 1.0]), atol=1e-6)
    assert states[0, 1, -1].abs().sum() == 0 and not v[0, 1, -1]


def test_regression_loss_masks_invalid_steps_and_is_zero_on_a_perfect_fit():
    target = torch.randn(2, 5, 6)
    valid = torch.ones(2, 5, dtype=torch.bool)
    assert losses.regression_loss(target.clone(), target, valid) == 0
    pred = target.clone()
    pred[1, 4] += 100.0  # only on an invalid step
    valid[1, 4] = False
    assert losses.regression_loss(pred, target, valid) == 0
    assert losses.regression_loss(pred, target, torch.ones_like(valid)) > 0
    empty = losses.regression_loss(pred, target, torch.zeros_like(valid))
    assert empty == 0 and torch.isfinite(empty)


def test_classification_loss_ignores_padded_lines():
    logits = torch.zeros(1, 2, 3)
    logits[0, 1] = 50.0  # a padded line with huge scores must not matter
    logits[0, 0, 2] = 10.0
    line_valid = torch.tensor([[True, False]])
    loss = losses.classification_loss(
        logits, line_valid, torch.tensor([0]), torch.tensor([2]), torch.tensor([True])
    )
    assert loss < 1e-3
    wrong = losses.classification_loss(
        logits, line_valid, torch.tensor([0]), torch.tensor([0]), torch.tensor([True])
    )
    assert wrong > 9.0


def test_prediction_loss_averages_over_valid_pairs_summing_channels():
    pred = torch.zeros(1, 2, 2, 6)
    target = torch.zeros(1, 2, 2, 6)
    target[0, 0, 0] = 3.0  # smooth-L1 of 3 = 2.5 per channel -> 15 summed
    valid = torch.tensor([[[True, True], [False, False]]])
    assert losses.prediction_loss(pred, target, valid).item() == pytest.approx(15.0 / 2)


def _sdf_map(size: int, res: float, fn) -> torch.Tensor:
    """Cost map (1, H, W, 1) with value fn(x, y) at pixel centres (CONTRACT convention)."""
    j = torch.arange(size, dtype=torch.float32)
    x = (j + 0.5 - size / 2) * res
    y = (size / 2 - j - 0.5) * res
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return fn(xx, yy)[None, ..., None].half()


def test_sample_cost_map_follows_the_contract_convention():
    res = 0.5
    cost = _sdf_map(40, res, lambda x, y: x + 10 * y)  # linear: bilinear is exact inside
    pts = torch.tensor([[[1.3, -2.1], [-4.0, 3.25], [0.0, 0.0]]])
    got = losses.sample_cost_map(cost, pts, res)
    want = pts[..., 0] + 10 * pts[..., 1]
    assert torch.allclose(got, want, atol=0.05)


def test_collision_loss_zero_on_wide_road_positive_near_the_edge():
    res = 0.2
    road = _sdf_map(200, res, lambda x, y: 5.0 - y.abs())  # a 10 m wide road along x
    traj = torch.zeros(1, 10, 4)
    traj[0, :, 0] = torch.linspace(0, 9, 10)
    traj[0, :, 2] = 1.0
    assert losses.collision_loss(traj, road, res) == 0
    edge = traj.clone()
    edge[0, 5:, 1] = 4.8  # drifts to the edge: the circles leave the road
    loss = losses.collision_loss(edge, road, res)
    assert loss > 0.5
    off_road_start = _sdf_map(200, res, lambda x, y: -1.0 - y.abs())  # ego starts off the road
    assert losses.collision_loss(edge, off_road_start, res) == 0
    edge.requires_grad_(True)
    losses.collision_loss(edge, road, res).backward()
    assert edge.grad[0, 5:, 1].gt(0).all()  # descending it moves back toward the centre


def test_ego_circles_cover_the_footprint():
    traj = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    centres, radius = losses.ego_circles(traj)
    xs = centres[0, 0, :, 0]
    assert xs[0] - radius < -losses.EGO_REAR_M + 0.3
    assert xs[-1] + radius > losses.EGO_FRONT_M - 0.3
    assert torch.allclose(centres[0, 0, :, 1], torch.zeros(3))


def test_contrastive_loss_prefers_the_positive():
    a = torch.randn(4, 8)
    good = losses.contrastive_loss(a, a + 0.01, -a, 0.1)
    bad = losses.contrastive_loss(a, -a, a + 0.01, 0.1)
    assert good < 1e-3 < 10 < bad


def test_planning_metrics_top_k_min_and_constant_velocity():
    f = 80
    t = torch.arange(1, f + 1, dtype=torch.float32) * 0.1
    target = torch.stack([10 * t, torch.zeros(f)], -1)[None]  # 10 m/s straight
    traj = torch.zeros(1, 1, 3, f, 6)
    traj[0, 0, 0, :, :2] = target[0] + torch.tensor([0.0, 1.0])  # 1 m off, best score
    traj[0, 0, 1, :, :2] = target[0]  # exact, second score
    traj[0, 0, 2, :, :2] = target[0] + 5.0
    logits = torch.tensor([[[3.0, 2.0, 1.0]]])
    valid = torch.ones(1, f, dtype=torch.bool)
    m, counted = planning_metrics(
        traj, logits, torch.tensor([[True]]), target, valid, torch.tensor([[5.0, 0.0]]), 0.1, k=2
    )
    assert counted.tolist() == [True]
    assert m["min_ade"].item() == pytest.approx(0.0, abs=1e-5)
    assert m["top1_ade"].item() == pytest.approx(1.0, abs=1e-5)
    assert m["top1_fde"].item() == pytest.approx(1.0, abs=1e-5)
    assert m["miss_rate"].item() == 0.0
    assert m["cv_fde"].item() == pytest.approx(40.0, abs=1e-3)  # 8 s x 5 m/s short
    cv = constant_velocity(torch.tensor([[5.0, 0.0]]), f, 0.1)
    assert cv[0, -1, 0].item() == pytest.approx(40.0)


def test_lr_schedule_warms_up_then_decays_to_min():
    f = [lr_factor(e, 10, 2, 1e-3, 1e-6) for e in (0.0, 1.0, 1.999, 2.0, 6.0, 10.0, 12.0)]
    assert 0 < f[0] < f[1] < f[2] <= 1.0
    assert f[3] == pytest.approx(1.0)
    assert f[4] < 1.0
    assert f[5] == pytest.approx(1e-3) and f[6] == pytest.approx(1e-3)  # min_lr / lr


def test_decay_groups_cover_each_parameter_once_and_skip_norms_biases_embeddings():
    net = torch.nn.Sequential(
        torch.nn.Embedding(4, 8),
        torch.nn.Linear(8, 8),
        torch.nn.LayerNorm(8),
        torch.nn.MultiheadAttention(8, 2, batch_first=True),
    )
    decay, rest = parameter_groups(net, 1e-4)
    ids = [id(p) for p in decay["params"]] + [id(p) for p in rest["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    assert {id(p) for p in decay["params"]} == {
        id(net[1].weight),
        id(net[3].in_proj_weight),
        id(net[3].out_proj.weight),
    }
    assert decay["weight_decay"] == 1e-4 and rest["weight_decay"] == 0.0
