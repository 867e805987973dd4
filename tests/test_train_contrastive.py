"""Contrastive augmentation on flat batches: re-centring, positives, negatives."""

from __future__ import annotations

import math

import torch
from train_fakes import flat_batch

from pluto_dvc.training.contrastive import (
    make_contrastive_batch,
    make_negative,
    project_future,
    recentre,
    resample_cost_map,
)

H = 20  # present index of the fake samples


def test_recentre_puts_the_ego_at_the_origin_and_keeps_distances():
    flat = flat_batch(3)
    pose = torch.tensor([[1.0, -0.5, 0.3], [0.0, 0.0, 0.0], [-0.7, 0.4, -0.2]])
    out = recentre(flat, pose, H, 0.2)
    assert torch.allclose(out["agent.position"][:, 0, H], torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(out["agent.heading"][:, 0, H], torch.zeros(3), atol=1e-6)
    # rigid motion: distances between map points are unchanged
    a, b = flat["map.point_position"][:, 0, 0, 0], flat["map.point_position"][:, 3, 1, 5]
    a2, b2 = out["map.point_position"][:, 0, 0, 0], out["map.point_position"][:, 3, 1, 5]
    assert torch.allclose((a - b).norm(dim=-1), (a2 - b2).norm(dim=-1), atol=1e-3)
    # a point at the new origin, seen from the old frame, maps to (0, 0)
    old = flat["agent.position"].clone()
    old[0, 1, 0] = pose[0, :2]
    moved = recentre({**flat, "agent.position": old}, pose, H, 0.2)
    assert torch.allclose(moved["agent.position"][0, 1, 0], torch.zeros(2), atol=1e-5)
    # headings turn by -yaw (wrapped), vectors rotate
    dh = out["agent.heading"][0, 1, 0] - flat["agent.heading"][0, 1, 0]
    assert math.isclose(math.remainder(dh.item() + 0.3, 2 * math.pi), 0.0, abs_tol=1e-5)
    assert torch.allclose(
        out["agent.velocity"].norm(dim=-1), flat["agent.velocity"].norm(dim=-1), atol=1e-4
    )


def test_project_future_recovers_arc_length_and_signed_lateral_offset():
    flat = flat_batch(1)
    line = torch.stack([torch.arange(120.0), torch.zeros(120)], -1)
    flat["reference_line.position"] = line[None, None].repeat(1, 2, 1, 1)
    flat["reference_line.vector"] = torch.tensor([1.0, 0.0]).expand(1, 2, 120, 2).clone()
    flat["reference_line.valid_mask"] = torch.ones(1, 2, 120, dtype=torch.bool)
    flat["reference_line.future_projection"] = torch.zeros(1, 2, 8, 2)
    t = torch.arange(1, 81, dtype=torch.float32) * 0.1
    flat["agent.position"][0, 0, H + 1 :] = torch.stack([5 * t, torch.full_like(t, 1.5)], -1)
    proj = project_future(flat, H)
    assert torch.allclose(proj[0, 0, :, 0], 5 * torch.arange(1, 9.0), atol=1e-4)
    assert torch.allclose(proj[0, 0, :, 1], torch.full((8,), 1.5), atol=1e-4)  # left positive


def test_resample_cost_map_shifts_with_the_ego():
    size, res = 100, 0.5
    j = torch.arange(size, dtype=torch.float32)
    x = (j + 0.5 - size / 2) * res
    y = (size / 2 - j - 0.5) * res
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    cost = (xx + 2 * yy)[None, ..., None]
    out = resample_cost_map(cost, torch.tensor([[3.0, -2.0, 0.0]]), res)
    # the new frame's (x, y) is the old (x + 3, y - 2): value x + 3 + 2 (y - 2)
    inner = slice(20, 80)
    want = (xx + 3 + 2 * (yy - 2))[inner, inner]
    assert torch.allclose(out[0, inner, inner, 0], want, atol=1e-3)


def test_negatives_apply_one_applicable_change_each():
    flat = flat_batch(4)
    flat = {
        k: (
            torch.cat([v, torch.zeros_like(v[:, :1])], 1)
            if k.startswith("agent.")
            or k
            in ("causal.leading_agent_mask", "causal.leading_distance", "causal.interaction_label")
            else v
        )
        for k, v in flat.items()
    }
    flat["agent.valid_mask"][:, 1:3, H] = True
    neg, has = make_negative(flat, H, ["drop_leading"])
    assert has.all()
    assert (
        not neg["agent.valid_mask"][:, 1].any()
        and neg["agent.valid_mask"][:, 2].eq(flat["agent.valid_mask"][:, 2]).all()
    )
    waiting = flat["causal.is_waiting_for_red_light_without_lead"]
    neg, has = make_negative(flat, H, ["red_light_to_green"])
    assert has.tolist() == waiting.tolist()
    assert (neg["map.polygon_tl_status"][waiting, 0] == 0).all()
    neg, has = make_negative(flat, H, ["insert_leading"])
    assert not has.any()  # every sample already has a leading agent
    flat["causal.leading_agent_mask"][:] = False
    neg, has = make_negative(flat, H, ["insert_leading"])
    assert has.all()
    assert neg["agent.valid_mask"][:, -1].all() and (neg["agent.category"][:, -1] == 1).all()
    x = neg["agent.position"][:, -1, H, 0]
    assert ((x >= 8) & (x <= 30)).all() and neg["agent.velocity"][:, -1].abs().sum() == 0


def test_contrastive_batch_is_anchor_positive_negative_with_anchors_unchanged():
    torch.manual_seed(0)
    flat = flat_batch(3)
    cb = make_contrastive_batch(flat, H, 0.2, ["drop_leading", "insert_leading"])
    assert cb.batch_size == 3
    a = flat["agent.position"].shape[1]
    assert cb.flat["agent.position"].shape[:2] == (9, a + 1)
    assert torch.equal(cb.flat["agent.position"][:3, :a], flat["agent.position"])
    assert torch.equal(cb.flat["cost_maps"][:3], flat["cost_maps"])
    assert cb.negative_valid.all()
    assert cb.flat["current_state"][3:6, :3].abs().sum() == 0  # positives re-centred
