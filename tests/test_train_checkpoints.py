"""Exported checkpoints (training/checkpoints.py): equal values give equal bytes, whatever the
folder the run used and whichever equal objects the pickle shared."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch

from pluto_dvc.training.checkpoints import export_checkpoint


def _checkpoint(run_dir: Path, shared: bool) -> dict:
    """A Lightning-shaped checkpoint; ``shared``: the optimizer's ``step`` keys are one string
    object and the callback's two scores one tensor (as in an uninterrupted run), else copies."""
    step = "step"
    key = step if shared else "".join(["st", "ep"])
    score = torch.tensor(1.5)
    state = OrderedDict(w=torch.arange(6.0).view(2, 3).t())  # a non-contiguous view
    state._metadata = OrderedDict({"": {"version": 1}})
    ckpt_dir = str(run_dir / ".train-resume" / "k" / "checkpoints")
    return {
        "state_dict": state,
        "optimizer_states": [
            {"state": {0: {step: torch.tensor(3.0)}, 1: {key: torch.tensor(3.0)}}}
        ],
        "callbacks": {
            "ModelCheckpoint{}": {
                "dirpath": ckpt_dir,
                "best_model_path": f"{ckpt_dir}/best.ckpt",
                "best_k_models": {f"{ckpt_dir}/best.ckpt": score},
                "best_model_score": score,
                "current_score": score if shared else score.clone(),
                "last_model_path": f"{ckpt_dir}/last.ckpt",
            }
        },
    }


def test_export_gives_equal_bytes_for_equal_values_from_other_folders(tmp_path):
    outs = []
    for name, shared in (("one", True), ("other", False)):
        run_dir = tmp_path / name
        ckpt_dir = run_dir / ".train-resume" / "k" / "checkpoints"
        ckpt_dir.mkdir(parents=True)
        src = ckpt_dir / "last.ckpt"
        torch.save(_checkpoint(run_dir, shared), src)
        out = tmp_path / f"models-{name}" / "checkpoints"
        out.mkdir(parents=True)
        export_checkpoint(src, out / "last.ckpt", ckpt_dir, "checkpoints")
        outs.append(out / "last.ckpt")
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in outs]
    assert sha[0] == sha[1]

    got = torch.load(outs[0], map_location="cpu", weights_only=True)
    callback = got["callbacks"]["ModelCheckpoint{}"]
    assert callback["dirpath"] == "checkpoints"
    assert callback["best_model_path"] == "checkpoints/best.ckpt"
    assert list(callback["best_k_models"]) == ["checkpoints/best.ckpt"]
    assert callback["last_model_path"] == "checkpoints/last.ckpt"
    assert torch.equal(got["state_dict"]["w"], torch.arange(6.0).view(2, 3).t())
    assert got["state_dict"]._metadata == {"": {"version": 1}}


def test_equal_values_pickled_with_other_sharing_differ_without_the_export(tmp_path):
    """What the export undoes: torch.save alone writes other bytes for the same values."""
    a, b = tmp_path / "a" / "last.ckpt", tmp_path / "b" / "last.ckpt"
    a.parent.mkdir()
    b.parent.mkdir()
    torch.save(_checkpoint(tmp_path, True), a)
    torch.save(_checkpoint(tmp_path, False), b)
    assert a.read_bytes() != b.read_bytes()
