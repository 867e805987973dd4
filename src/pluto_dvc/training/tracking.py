"""Experiment tracking through Lightning loggers: MLflow (SQLite store) and dvclive.

MLflow 3 refuses a plain ``./mlruns`` store: the tracking URI is ``sqlite:///<root>/mlflow.db``
and artifacts go to ``<root>/mlartifacts``, both absolute, ``<root>`` being ``DVC_ROOT`` when set
(``dvc exp run --queue`` runs in a temporary copy; DVC_ROOT names the real repository) or the
working directory. The run is named after ``DVC_EXP_NAME`` when set and tagged with the git
revision and, once the model is exported, with the SHA-256 of its ``model.safetensors``
(``MODEL_SHA256_TAG``): the stage's output holds no run id (it would differ per run and clone and
break DVC's same-inputs-same-output hash), so the evaluation finds the run by its model
(:func:`find_model_run`). dvclive writes ``metrics.json`` and per-metric plots with
``dvcyaml=False``: the train stage declares them in dvc.yaml by hand.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

MLFLOW_EXPERIMENT = "pluto-dvc"
MODEL_SHA256_TAG = "pluto_dvc.model_sha256"
MLFLOW_DB = "mlflow.db"  # the SQLite store, under the tracking root


def tracking_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def mlflow_uris(root: Path | None = None) -> tuple[str, str]:
    """(tracking URI, artifact location URI) under ``root`` (default :func:`tracking_root`)."""
    root = (root or tracking_root()).resolve()
    return f"sqlite:///{root / MLFLOW_DB}", (root / "mlartifacts").as_uri()


def git_revision(cwd: Path | None = None) -> str:
    """The HEAD commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def model_sha256(model_dir: Path) -> str:
    """SHA-256 (hex) of ``<model_dir>/model.safetensors``, the value of ``MODEL_SHA256_TAG``."""
    from pluto_dvc.model.weights import WEIGHTS_FILE

    h = hashlib.sha256()
    with (Path(model_dir) / WEIGHTS_FILE).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_model_run(client, sha256: str) -> str | None:
    """Id of the newest run of ``MLFLOW_EXPERIMENT`` tagged with the model ``sha256``, or None.
    Several runs can hold the same model (same params + data trained again): the newest wins."""
    experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{MODEL_SHA256_TAG}` = '{sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def mlflow_logger(run_id: str | None = None):
    """Lightning's MLFlowLogger on the SQLite store; ``run_id`` continues an existing run."""
    from lightning.pytorch.loggers import MLFlowLogger

    uri, artifacts = mlflow_uris()
    tags = {"git_revision": git_revision(tracking_root())}
    name = os.environ.get("DVC_EXP_NAME") or None
    if name:
        tags["dvc_exp_name"] = name
    return MLFlowLogger(
        experiment_name=MLFLOW_EXPERIMENT,
        run_name=name,
        tracking_uri=uri,
        artifact_location=artifacts,
        tags=tags,
        run_id=run_id,
        log_model=False,
    )


def dvclive_logger(directory: Path, resume: bool):
    """dvclive's Lightning logger writing to ``directory`` (no dvc.yaml edits, no auto exp)."""
    from dvclive.lightning import DVCLiveLogger

    return DVCLiveLogger(
        dir=str(directory), dvcyaml=False, save_dvc_exp=False, resume=resume, report=None
    )
