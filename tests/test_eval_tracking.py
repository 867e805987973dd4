"""The evaluation lands in the training's MLflow run (SQLite store under DVC_ROOT)."""

from __future__ import annotations

import json
from pathlib import Path

from pluto_dvc.evaluation.tracking import flatten, log_to_training_run


def test_flatten_keeps_numeric_leaves():
    nested = {"ols": {"model": {"score": 0.5, "num_scenarios": 3}}, "note": "x", "ok": True}
    assert flatten(nested) == {"eval/ols/model/score": 0.5, "eval/ols/model/num_scenarios": 3.0}


def test_metrics_and_reports_are_logged_into_the_training_run(tmp_path: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.chdir(tmp_path)  # not the root: the store must come from DVC_ROOT
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "pluto-dvc", artifact_location=(root / "mlartifacts").as_uri()
    )
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    summary = tmp_path / "train_summary.json"
    summary.write_text(json.dumps({"mlflow_run_id": run.info.run_id, "mlflow_tracking_uri": uri}))
    reports = tmp_path / "reports"
    (reports / "scenes").mkdir(parents=True)
    (reports / "metrics.json").write_text("{}")
    (reports / "scenes" / "a.png").write_bytes(b"\x89PNG")

    message = log_to_training_run(summary, {"ols": {"model": {"score": 0.75}}}, reports)
    assert run.info.run_id in message
    logged = client.get_run(run.info.run_id)
    assert logged.data.metrics["eval/ols/model/score"] == 0.75
    names = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert names == {"evaluation/metrics.json", "evaluation/scenes"}

    # no summary / no run: said, not raised
    assert "does not exist" in log_to_training_run(tmp_path / "none.json", {}, reports)
    summary.write_text(json.dumps({"mlflow_run_id": "0" * 32}))
    assert "is not in" in log_to_training_run(summary, {}, reports)
