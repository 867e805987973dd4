"""The `train` stage under DVC in a temporary repo: `dvc repro`, `dvc exp show` lists the val
metrics, and the run-cache restores a previous params combination without training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_train_model import TINY_OVERRIDES
from train_fakes import make_train_data

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_dvc_repro_train_then_exp_show_lists_val_metrics_and_run_cache_restores(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(key, None)
    make_train_data(repo / "data", logs=3, per_log=6)
    (repo / "stages").mkdir()
    shutil.copy(ROOT / "stages" / "train.py", repo / "stages" / "train.py")
    for package in ("training", "model"):
        shutil.copytree(
            ROOT / "src" / "pluto_dvc" / package,
            repo / "src" / "pluto_dvc" / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    project = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline = {
        "stages": {"train": project["stages"]["train"]},
        "metrics": [m for m in project["metrics"] if m.startswith("dvclive/")],
        "plots": [p for p in project["plots"] if "dvclive/" in json.dumps(p)],
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    params = {
        "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 3, "lr": 0.001},
        "model": {"preset": "small", "overrides": TINY_OVERRIDES},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / ".gitignore").write_text("/data/cache\n/mlflow.db\n/mlartifacts/\n/.train-resume/\n")
    _run(["git", "init", "-q"], repo, env)
    _run(["dvc", "init", "-q"], repo, env)
    _run(["git", "add", "."], repo, env)
    _run(["git", "commit", "-qm", "project"], repo, env)

    _run(["dvc", "repro", "train"], repo, env)
    assert (repo / "models" / "model.safetensors").is_file()
    _run(["git", "add", "."], repo, env)
    _run(["git", "commit", "-qm", "trained"], repo, env)
    text = _run(["dvc", "exp", "show", "--json"], repo, env)
    for metric in ("min_ade", "top1_ade", "cv_ade", "loss"):
        assert f'"{metric}"' in text, metric
    csv = _run(["dvc", "exp", "show", "--csv"], repo, env)
    header = csv.splitlines()[0]
    assert "val.min_ade" in header and "val.top1_fde" in header and "train.lr" in header

    summary = json.loads((repo / "models" / "train_summary.json").read_text())
    weights = (repo / "models" / "model.safetensors").read_bytes()
    params["train"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["dvc", "repro", "train"], repo, env)
    assert (repo / "models" / "model.safetensors").read_bytes() != weights
    params["train"]["lr"] = 0.001
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "repro", "train"], repo, env)
    assert "skipping run" in out  # restored from the run-cache, not trained again
    assert (repo / "models" / "model.safetensors").read_bytes() == weights
    assert json.loads((repo / "models" / "train_summary.json").read_text()) == summary
