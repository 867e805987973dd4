"""collate: pad along the first axis to the batch maximum with zeros / False, stack the rest."""

from __future__ import annotations

import numpy as np
import pytest

from pluto_dvc.features import collate


def sample(a: int, m: int, r: int, s: int, value: float) -> dict[str, np.ndarray]:
    return {
        "current_state": np.full(7, value, np.float32),
        "origin": np.array([value, value]),
        "angle": np.array(value),
        "agent.position": np.full((a, 5, 2), value, np.float32),
        "agent.valid_mask": np.ones((a, 5), bool),
        "map.point_position": np.full((m, 3, 4, 2), value, np.float32),
        "map.valid_mask": np.ones((m, 4), bool),
        "reference_line.position": np.full((r, 6, 2), value, np.float32),
        "static_objects.valid_mask": np.ones(s, bool),
        "cost_maps": np.full((8, 8, 1), value, np.float16),
        "causal.leading_agent_index": np.array(a - 1, np.int16),
    }


def test_collate_pads_and_stacks():
    batch = collate([sample(3, 10, 2, 0, 1.0), sample(5, 4, 0, 2, 2.0), sample(1, 7, 1, 1, 3.0)])
    assert batch["current_state"].shape == (3, 7) and batch["current_state"].dtype == np.float32
    assert batch["origin"].shape == (3, 2) and batch["angle"].shape == (3,)
    assert batch["cost_maps"].shape == (3, 8, 8, 1) and batch["cost_maps"].dtype == np.float16
    assert batch["causal.leading_agent_index"].tolist() == [2, 4, 0]
    pos, mask = batch["agent.position"], batch["agent.valid_mask"]
    assert pos.shape == (3, 5, 5, 2) and mask.shape == (3, 5, 5) and mask.dtype == bool
    assert mask.sum(axis=(1, 2)).tolist() == [15, 25, 5]
    assert np.all(pos[0, :3] == 1.0) and np.all(pos[0, 3:] == 0.0)
    assert np.all(pos[2, :1] == 3.0) and np.all(pos[2, 1:] == 0.0)
    assert batch["map.point_position"].shape == (3, 10, 3, 4, 2)
    assert batch["map.valid_mask"].any(axis=2).sum(axis=1).tolist() == [10, 4, 7]
    assert batch["reference_line.position"].shape == (3, 2, 6, 2)
    assert not batch["reference_line.position"][1].any()
    assert batch["static_objects.valid_mask"].tolist() == [
        [False, False],
        [True, True],
        [True, False],
    ]


def test_collate_equal_sizes_stack_without_padding():
    batch = collate([sample(2, 3, 1, 1, 1.0), sample(2, 3, 1, 1, 2.0)])
    assert batch["agent.position"].shape == (2, 2, 5, 2)
    assert np.all(batch["agent.position"][1] == 2.0)


def test_collate_errors():
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    a, b = sample(2, 3, 1, 1, 1.0), sample(2, 3, 1, 1, 1.0)
    del b["cost_maps"]
    with pytest.raises(ValueError, match="different keys"):
        collate([a, b])
    b = sample(2, 3, 1, 1, 1.0)
    b["agent.position"] = np.zeros((2, 6, 2), np.float32)
    with pytest.raises(ValueError, match="beyond the first axis"):
        collate([a, b])
