"""Log the evaluation into the MLflow run of the training it evaluates.

The run is the newest one tagged with the SHA-256 of the evaluated ``model.safetensors``
(``pluto_dvc.training.tracking.find_model_run``; the train stage's output names no run, so that
it is identical for the same params + data). The tracking store is the training's
(``pluto_dvc.training.tracking.mlflow_uris``): the SQLite file ``<root>/mlflow.db``, ``root`` =
``DVC_ROOT`` when set (DVC runs experiments in other folders), else the working directory.
Nothing is logged (and the reason is returned) when there is no model file, no store or no run of
this model in it: the evaluation itself never fails because of tracking.
"""

from __future__ import annotations

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
    model_dir: str | Path,
    metrics: Mapping[str, Any],
    reports_dir: str | Path,
    root: str | Path | None = None,
) -> str:
    """Log ``metrics`` (flattened, prefix ``eval/``) and the files of ``reports_dir`` (artifact
    folder ``evaluation``) into the run that trained ``model_dir``; returns what was done (one
    line)."""
    from pluto_dvc.model.weights import WEIGHTS_FILE
    from pluto_dvc.training.tracking import (
        MLFLOW_DB,
        find_model_run,
        mlflow_uris,
        model_sha256,
        tracking_root,
    )

    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        return f"MLflow: not logged ({weights} does not exist)"
    store_root = (Path(root) if root is not None else tracking_root()).resolve()
    uri, _ = mlflow_uris(store_root)
    if not (store_root / MLFLOW_DB).is_file():  # do not create an empty store
        return f"MLflow: not logged (no run of this model in {uri})"
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = find_model_run(client, model_sha256(Path(model_dir)))
    if run_id is None:
        return f"MLflow: not logged (no run of this model in {uri})"
    stamp = int(time.time() * 1000)
    values = [Metric(k, v, stamp, 0) for k, v in flatten(metrics).items()]
    for start in range(0, len(values), 500):
        client.log_batch(run_id, metrics=values[start : start + 500])
    client.log_artifacts(run_id, str(reports_dir), artifact_path="evaluation")
    return f"MLflow: logged {len(values)} metrics and reports/ into run {run_id} ({uri})"
