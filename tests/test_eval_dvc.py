"""`dvc repro evaluate` on a tiny synthetic pipeline in a throw-away repository: the whole chain
runs, metrics.json is a DVC metric, the horizon plots and scene pictures are DVC plots, the
evaluation lands in the training's MLflow run, and a second repro has nothing to do."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from dvc_repo import TINY_PIPELINE, DvcRepo


@pytest.mark.slow
def test_dvc_repro_evaluate(tmp_path: Path):
    repo = DvcRepo(tmp_path / "repo", params=TINY_PIPELINE)
    out = repo.repro("evaluate").stdout
    assert "expert" in out and "MLflow: logged" in out, out
    reports = repo.root / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["ols"]["expert"]["score"] == 1.0 and metrics["counts"]["scenarios"] >= 1

    shown = json.loads(repo.run("dvc", "metrics", "show", "--json").stdout)
    assert "reports/metrics.json" in json.dumps(shown)
    plots = json.loads(repo.run("dvc", "plots", "show", "--json").stdout)["data"]
    assert "Displacement error against horizon (m)" in plots
    assert "reports/scenes/worst_00.png" in plots  # an image plot

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("pluto-dvc").experiment_id])
    sha = hashlib.sha256((repo.root / "models" / "model.safetensors").read_bytes()).hexdigest()
    assert run.data.tags["pluto_dvc.model_sha256"] == sha
    logged = run.data.metrics
    assert logged["eval/ols/expert/score"] == 1.0 and "eval/learning/min_ade" in logged

    assert "up to date" in repo.run("dvc", "status", "evaluate").stdout
