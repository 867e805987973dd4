"""The evaluation lands in the training's MLflow run (SQLite store under DVC_ROOT)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from pluto_dvc.evaluation.tracking import flatten, log_to_training_run


def test_flatten_keeps_numeric_leaves():
    nested = {"ols": {"model": {"score": 0.5, "num_scenarios": 3}}, "note": "x", "ok": True}
    assert flatten(nested) == {"eval/ols/model/score": 0.5, "eval/ols/model/num_scenarios": 3.0}


def test_metrics_and_reports_are_logged_into_the_newest_run_of_the_model(
    tmp_path: Path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.chdir(tmp_path)  # not the root: the store must come from DVC_ROOT
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.safetensors").write_bytes(b"weights of the evaluated model")
    sha = hashlib.sha256(b"weights of the evaluated model").hexdigest()
    reports = tmp_path / "reports"
    (reports / "scenes").mkdir(parents=True)
    (reports / "metrics.json").write_text("{}")
    (reports / "scenes" / "a.png").write_bytes(b"\x89PNG")

    # no store yet: said, not raised, and no empty store created
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert log_to_training_run(models, {}, reports) == (
        f"MLflow: not logged (no run of this model in {uri})"
    )
    assert not (root / "mlflow.db").exists()

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "pluto-dvc", artifact_location=(root / "mlartifacts").as_uri()
    )
    runs = {}
    for name, tag in (("older", sha), ("newer", sha), ("other-model", "0" * 64)):
        runs[name] = client.create_run(
            experiment, tags={"pluto_dvc.model_sha256": tag}, run_name=name
        ).info.run_id
        client.set_terminated(runs[name])
        time.sleep(0.01)  # distinct start times

    message = log_to_training_run(models, {"ols": {"model": {"score": 0.75}}}, reports)
    assert runs["newer"] in message
    logged = client.get_run(runs["newer"])
    assert logged.data.metrics["eval/ols/model/score"] == 0.75
    names = {a.path for a in client.list_artifacts(runs["newer"], "evaluation")}
    assert names == {"evaluation/metrics.json", "evaluation/scenes"}
    for name in ("older", "other-model"):
        assert not client.get_run(runs[name]).data.metrics

    # no model / a model no run holds: said, not raised
    assert "does not exist" in log_to_training_run(tmp_path / "none", {}, reports)
    (models / "model.safetensors").write_bytes(b"retrained elsewhere")
    assert log_to_training_run(models, {}, reports) == (
        f"MLflow: not logged (no run of this model in {uri})"
    )
