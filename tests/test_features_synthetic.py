"""The feature builder on a tiny synthetic nuPlan dataset (real log DB + GeoPackage readers):
every candidate scenario builds or fails with a FeatureError reason, shapes and dtypes hold, the
ego follows its reference line and stands on drivable space, samples are deterministic, and a
batch of real samples collates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from feature_factory import check_keys_shapes_dtypes

from pluto_dvc.features import FeatureError, LogFeatureBuilder, collate
from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.map_reader import MapsRoot
from pluto_dvc.params import FeatureParams

STRIDE = 15


@pytest.fixture(scope="module")
def dataset(tiny_synthetic):
    """The first log of the session's tiny synthetic dataset (tests/conftest.py) and its map."""
    log = load_log(sorted(Path(tiny_synthetic.logs_dir).glob("*.db"))[0])
    return log, MapsRoot(tiny_synthetic.maps_root).load(log.meta.location)


@pytest.fixture(scope="module")
def built(dataset):
    log, nuplan_map = dataset
    builder = LogFeatureBuilder(FeatureParams(), log, nuplan_map)
    frames = list(range(0, log.num_frames, STRIDE))  # every frame is a possible scenario
    samples, failures = {}, {}
    for frame in frames:
        try:
            samples[frame] = builder.build(frame)
        except FeatureError as exc:
            failures[frame] = exc.reason
    return samples, failures


def test_every_scenario_builds_or_has_a_reason(dataset, built):
    samples, failures = built
    log, _ = dataset
    assert all(reason for reason in failures.values())
    full = [f for f in range(0, log.num_frames, STRIDE) if 40 <= f < log.num_frames - 160]
    assert len(full) >= 60
    # frames without 2 s of history / 8 s of future fail, and say so
    for frame, reason in failures.items():
        if frame not in full:
            assert "not enough" in reason
    # the synthetic ego drives its route: (nearly) every full-window frame is valid
    assert sum(f in samples for f in full) >= 0.95 * len(full), failures


def test_shapes_and_dtypes_on_real_logs(built):
    samples, _ = built
    for sample in samples.values():
        sizes = check_keys_shapes_dtypes(sample)
        assert 1 <= sizes["A"] <= 1 + FeatureParams().max_agents
        assert sizes["R"] >= 1 and sizes["M"] >= 1
        assert sample["reference_line.valid_mask"].any()
        assert np.isfinite(sample["cost_maps"].astype(np.float32)).all()
        for key, value in sample.items():
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), key


def test_ego_follows_a_reference_line_on_drivable_space(built):
    samples, _ = built
    lateral, on_road = [], []
    for s in samples.values():
        lateral.append(np.abs(s["reference_line.future_projection"][:, 0, 1]).min())
        on_road.append(float(s["cost_maps"][300, 300, 0]) > 0.0)  # the pixel at the ego
        assert s["map.polygon_on_route"].any()
    assert np.median(lateral) < 0.5  # 1 s ahead the ego is on one of its lines
    assert np.mean(on_road) > 0.95


def test_determinism_on_real_logs(dataset, built):
    samples, _ = built
    log, nuplan_map = dataset
    fresh = LogFeatureBuilder(FeatureParams(), log, nuplan_map)
    for frame in list(samples)[:3]:
        again = fresh.build(frame)
        assert all(again[k].tobytes() == samples[frame][k].tobytes() for k in samples[frame])


def test_collate_real_samples(built):
    samples, _ = built
    batch_list = list(samples.values())[:6]
    batch = collate(batch_list)
    a = max(len(s["agent.category"]) for s in batch_list)
    assert batch["agent.position"].shape == (len(batch_list), a, 101, 2)
    assert batch["cost_maps"].shape == (len(batch_list), 600, 600, 1)
    for i, s in enumerate(batch_list):
        n = len(s["agent.category"])
        assert batch["agent.valid_mask"][i, :n].any(axis=1).all()
        assert not batch["agent.valid_mask"][i, n:].any()
