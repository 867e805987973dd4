"""Training with the real PLUTO network: overfitting a few samples, checkpoint reload, CIL step."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from model_samples import TINY, sample
from train_fakes import add_causal, make_train_data

from pluto_dvc.features import collate
from pluto_dvc.model import PlutoBatch, load_model
from pluto_dvc.params import TrainParams, parse_params
from pluto_dvc.training.module import PlutoTrainingModule
from pluto_dvc.training.run import TrainPaths, run_training

FACTS = {
    "history": 20,
    "future_steps": 80,
    "dt": 0.1,
    "mode_length_m": 120.0,
    "cost_map_resolution": 0.2,
}
TINY_OVERRIDES = {
    k: (list(v) if isinstance(v, tuple) else v)
    for k, v in TINY.to_dict().items()
    if k
    in (
        "dim",
        "num_heads",
        "encoder_depth",
        "decoder_depth",
        "num_modes",
        "history_dims",
        "history_heads",
        "fourier_bands",
        "ref_free_head",
        "hidden_proj",
    )
}


def _consistent_batch(n: int) -> PlutoBatch:
    """n samples whose ego drives along its first reference line, with matching projections."""
    samples = []
    for i in range(n):
        s = sample(i, agents=6, polygons=12, lines=2, statics=1)
        t = np.arange(101, dtype=np.float32) * 0.1 - 2.0
        speed = 4.0 + 2 * i
        s["agent.position"][0] = np.stack([speed * t, 0.3 * i * t], -1)
        s["agent.heading"][0] = np.arctan2(0.3 * i, speed)
        s["agent.velocity"][0] = [speed, 0.3 * i]
        s["agent.valid_mask"][0] = True
        line = np.stack([np.arange(120.0), np.zeros(120)], -1).astype(np.float32)
        s["reference_line.position"][0] = line
        s["reference_line.valid_mask"][:] = True
        s["reference_line.future_projection"][0] = np.stack(
            [speed * np.arange(1, 9), 0.3 * i * np.arange(1, 9)], -1
        )
        s["reference_line.future_projection"][1, :, 1] = 50.0
        x = (np.arange(600) + 0.5 - 300) * 0.2
        y = (300 - np.arange(600) - 0.5) * 0.2
        s["cost_maps"] = (8.0 - np.abs(y)[:, None] + 0 * x[None]).astype(np.float16)[..., None]
        samples.append(add_causal(s))
    return PlutoBatch.from_flat({k: torch.from_numpy(v) for k, v in collate(samples).items()})


def _module(train: TrainParams | None = None, **overrides) -> PlutoTrainingModule:
    config = TINY.replace(dropout=0.0, drop_path=0.0, state_dropout=0.0, **overrides)
    module = PlutoTrainingModule.create(config, train or TrainParams(), FACTS, 1)
    module.log_dict = lambda *a, **k: None
    module.log = lambda *a, **k: None
    return module


@pytest.mark.slow  # 500 optimiser steps: 1-10 minutes on 2 shared CPU cores
def test_overfits_a_handful_of_samples():
    torch.manual_seed(0)
    batch = _consistent_batch(4)
    module = _module()
    optim = torch.optim.AdamW(module.parameters(), lr=3e-3)
    module.train()
    first = None
    for _ in range(500):
        terms = module.loss_terms(batch.to_flat(), module(batch), slice(0, 4), None)
        loss = sum(terms.values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        if first is None:
            first = {k: v.item() for k, v in terms.items()}
    last = {k: v.item() for k, v in terms.items()}
    assert last["regression"] < 0.05 and last["regression"] < 0.01 * first["regression"], (
        first,
        last,
    )
    assert last["classification"] < 0.1 * first["classification"]
    assert last["collision"] == pytest.approx(0.0, abs=1e-3)  # the expert stays on the 16 m road


def test_loss_is_the_weighted_sum_of_the_logged_terms():
    torch.manual_seed(0)
    batch = _consistent_batch(3)
    weights = {"regression": 3.0, "prediction": 2.5, "classification": 0.5, "ref_free": 0.0}
    module = _module(TrainParams(loss_weights=weights))
    seen = {}
    module.log_dict = lambda values, **k: seen.update(values)
    module.eval()  # deterministic forward: the terms do not depend on dropout draws
    loss = module._step(batch, "train")
    terms = {k.removeprefix("train/").removesuffix("_loss"): v for k, v in seen.items()}
    assert all(terms[k] > 0 for k in weights)
    expected = sum(weights.get(k, 1.0) * v for k, v in terms.items() if k != "loss")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert seen["train/loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_contrastive_step_runs_with_a_finite_contrastive_term():
    torch.manual_seed(0)
    batch = _consistent_batch(3)
    module = _module(TrainParams(contrastive=True))
    seen = {}
    module.log_dict = lambda values, **k: seen.update(values)
    module.train()
    loss = module._step(batch, "train")
    loss.backward()
    assert torch.isfinite(loss)
    assert "train/contrastive_loss" in seen and torch.isfinite(seen["train/contrastive_loss"])
    grads = [p.grad for p in module.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_checkpoint_and_exported_model_reload_to_identical_outputs(tmp_path, monkeypatch):
    make_train_data(tmp_path, logs=3, per_log=6)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "splits.json"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    params = parse_params(
        {
            "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 3},
            "model": {"preset": "small", "overrides": TINY_OVERRIDES},
        }
    )
    summary = run_training(params, TrainPaths(Path("cache"), Path("splits.json")), False).summary
    models = tmp_path / "models"
    batch = _consistent_batch(2)
    exported = load_model(models)
    with torch.no_grad():
        want = exported(batch)
    best = models / "checkpoints" / summary["best_checkpoint"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    fresh = PlutoTrainingModule(hp["model_config"], hp["train"], hp["data"])
    fresh.load_state_dict(ckpt["state_dict"])
    fresh.eval()
    with torch.no_grad():
        got = fresh(batch)
    for name in ("trajectory", "probability", "prediction", "ref_free_trajectory", "hidden"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert exported.config.dim == TINY.dim and exported.config.num_modes == TINY.num_modes
    last = torch.load(models / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and "optimizer_states" in last
