"""`dvc repro evaluate` on a tiny synthetic pipeline in a throw-away repository: the whole chain
runs, metrics.json is a DVC metric, the horizon plots and scene pictures are DVC plots, the
evaluation lands in the training's MLflow run, and a second repro has nothing to do."""

from __future__ import annotations

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

    run_id = json.loads((repo.root / "models" / "train_summary.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / 'mlflow.db'}")
    logged = client.get_run(run_id).data.metrics
    assert logged["eval/ols/expert/score"] == 1.0 and "eval/learning/min_ade" in logged

    assert "up to date" in repo.run("dvc", "status", "evaluate").stdout
