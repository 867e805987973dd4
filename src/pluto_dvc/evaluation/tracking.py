"""Log the evaluation into the MLflow run of the training it evaluates.

The run id comes from ``models/train_summary.json`` (written by the train stage). The tracking
store is the training's (``pluto_dvc.training.tracking.mlflow_uris``): the SQLite file
``<root>/mlflow.db``, ``root`` = ``DVC_ROOT`` when set (DVC runs experiments in other folders),
else the working directory. Nothing is logged (and the reason is returned) when there is no summary, no run id or
the run is not in that store: the evaluation itself never fails because of tracking.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def flatten(metrics: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """{"eval/ols/model/score": 0.8, ...} of the numeric leaves of a nested dict."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def log_to_training_run(
    summary_path: str | Path,
    metrics: Mapping[str, Any],
    reports_dir: str | Path,
    root: str | Path | None = None,
) -> str:
    """Log ``metrics`` (flattened, prefix ``eval/``) and the files of ``reports_dir`` (artifact
    folder ``evaluation``) into the training's run; returns what was done (one line)."""
    path = Path(summary_path)
    if not path.is_file():
        return f"MLflow: not logged ({path} does not exist)"
    try:
        run_id = json.loads(path.read_text()).get("mlflow_run_id")
    except (json.JSONDecodeError, AttributeError):
        return f"MLflow: not logged ({path} is not a JSON object)"
    if not run_id:
        return f"MLflow: not logged ({path} has no mlflow_run_id)"
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pluto_dvc.training.tracking import mlflow_uris

    uri, _ = mlflow_uris(Path(root) if root is not None else None)
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        return f"MLflow: not logged (run {run_id} is not in {uri})"
    stamp = int(time.time() * 1000)
    values = [Metric(k, v, stamp, 0) for k, v in flatten(metrics).items()]
    for start in range(0, len(values), 500):
        client.log_batch(run_id, metrics=values[start : start + 500])
    client.log_artifacts(run_id, str(reports_dir), artifact_path="evaluation")
    return f"MLflow: logged {len(values)} metrics and reports/ into run {run_id} ({uri})"
