"""One training run: cache + split + params -> models/ (the ``train`` stage and ``pluto-dvc train``).

Outputs (``out_dir``, default ``models/``): ``model.safetensors`` + ``model_config.json`` (the
best checkpoint by validation loss, loadable by ``load_model`` alone), ``checkpoints/``
(Lightning ``best-*.ckpt`` and ``last.ckpt``, loaded only with ``weights_only=True``),
``train_summary.json`` (epochs, validation metrics of the exported model, constant velocity on
the same samples); dvclive's ``metrics.json`` and plots in ``live_dir``.

Determinism: same params + data give a byte-identical ``out_dir`` in any folder and any run, so
DVC hashes it the same. Nothing run-specific goes there: the MLflow run (its id and store are in
the returned :class:`TrainResult`) is tagged ``pluto_dvc.model_sha256`` with the SHA-256 of
``model.safetensors``, which is how the evaluation finds it; the checkpoints are rewritten on
export with ModelCheckpoint's paths relative to ``out_dir`` (``checkpoints/last.ckpt``) instead
of the absolute resume folder, pickled canonically (``training/checkpoints.py``).

Resume: while training, checkpoints and the dvclive history live in
``<resume_root>/<key>/``, outside the stage's outputs (DVC deletes those before a run), where
``key`` hashes everything the result depends on (train params, model config, the cache's
fingerprint and sample count, the split, the training and model code). A killed run restarted
with the same inputs continues from the last completed epoch; any changed input gets a new key
and starts fresh. The folder is removed after a successful run, so DVC's run-cache is unaffected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pluto_dvc.errors import DataError, ParamsError
from pluto_dvc.io import write_json
from pluto_dvc.params import Params
from pluto_dvc.training import tracking
from pluto_dvc.training.checkpoints import export_checkpoint

log = logging.getLogger(__name__)

RESUME_ROOT = Path(".train-resume")
CODE_PACKAGES = ("training", "model")


@dataclass(frozen=True)
class TrainPaths:
    cache_dir: Path = Path("data/cache")
    splits_path: Path = Path("data/splits.json")
    out_dir: Path = Path("models")
    live_dir: Path = Path("dvclive")
    resume_root: Path = RESUME_ROOT


def model_config_for(params: Params, cache: Any):
    """The model config of ``params.model`` (preset + overrides) with the cache's data sizes."""
    config = params.model.config(cache)
    if params.train.contrastive and not config.hidden_proj:
        raise ParamsError(
            "train.contrastive is true but the model has no hidden projection for the "
            "contrastive loss: set model.hidden_proj: true (or train.contrastive: false)"
        )
    return config


def data_facts(meta: dict) -> dict[str, float]:
    """What the losses need from the cache metadata (``source.features``)."""
    f = meta.get("source", {}).get("features", {})
    interval = float(f.get("sample_interval_s", 0.1))
    return {
        "history": int(round(float(f.get("history_horizon_s", 2.0)) / interval)),
        "future_steps": int(round(float(f.get("future_horizon_s", 8.0)) / interval)),
        "dt": interval,
        "mode_length_m": float(f.get("radius_m", 120.0)),
        "cost_map_resolution": float(f.get("cost_map_resolution_m", 0.2)),
    }


def _code_hash() -> str:
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def resume_key(params: Params, config: Any, meta: dict, splits: dict) -> str:
    """Hash of every input of the run (see the module doc)."""
    content = {
        "train": params.train.model_dump(mode="json"),
        "model": config.to_dict(),
        "cache": [meta.get("fingerprint"), meta.get("num_samples")],
        "splits": splits,
        "code": _code_hash(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def _usable_checkpoint(path: Path) -> bool:
    """A checkpoint file that loads (a kill during its write leaves a truncated one)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not resume from it
        log.warning("ignoring unreadable resume checkpoint %s (%s); starting fresh", path, exc)
        return False
    return True


@dataclass(frozen=True)
class TrainResult:
    summary: dict  # what ``train_summary.json`` holds
    mlflow_run_id: str
    mlflow_tracking_uri: str


def run_training(
    params: Params, paths: TrainPaths = TrainPaths(), progress: bool = True
) -> TrainResult | None:
    """Train, export and summarise (see the module doc); ``None`` on DDP ranks other than 0."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from pluto_dvc.splitting import read_splits
    from pluto_dvc.training.data import PlutoDataModule
    from pluto_dvc.training.module import PlutoTrainingModule

    p = params.train
    if not Path(paths.cache_dir).is_dir():
        raise DataError(f"cache {paths.cache_dir} does not exist; run `dvc repro build_cache`")
    splits = read_splits(paths.splits_path)
    L.seed_everything(p.seed, workers=True, verbose=False)
    data = PlutoDataModule(
        paths.cache_dir,
        paths.splits_path,
        p.batch_size,
        seed=p.seed,
        num_workers=p.num_workers,
        pin_memory=p.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available(),
    )
    meta = data.meta
    config = model_config_for(params, meta)
    facts = data_facts(meta)
    world = p.devices if p.strategy != "auto" or p.devices > 1 else 1
    steps = -(-(len(data.parts["train"]) // world) // p.batch_size)
    if p.limit_train_batches:
        steps = min(steps, p.limit_train_batches)
    module = PlutoTrainingModule.create(config, p, facts, steps)

    key = resume_key(params, config, meta, splits)
    resume_dir = Path(paths.resume_root) / key
    resume_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = resume_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resuming = last.is_file() and _usable_checkpoint(last)
    run_id_file = resume_dir / "mlflow_run_id"
    run_id = run_id_file.read_text().strip() if resuming and run_id_file.is_file() else None

    mlflow = tracking.mlflow_logger(run_id)
    live = tracking.dvclive_logger(resume_dir / "dvclive", resume=resuming)
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch={epoch:03d}-val_loss={val/loss:.4f}",
        auto_insert_metric_name=False,
        monitor="val/loss",
        mode="min",
        save_top_k=p.checkpoint_top_k,
        save_last=True,
    )
    trainer = L.Trainer(
        max_epochs=p.epochs,
        accelerator=p.accelerator,
        devices=p.devices,
        strategy=p.strategy,
        precision=p.precision,
        gradient_clip_val=p.grad_clip or None,
        deterministic=True,
        use_distributed_sampler=False,  # the batch sampler is rank-aware (training/data.py)
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch")],
        logger=[mlflow, live],
        limit_train_batches=p.limit_train_batches,
        limit_val_batches=p.limit_val_batches,
        log_every_n_steps=p.log_every_n_steps,
        num_sanity_val_steps=0,
        enable_progress_bar=progress and sys.stderr.isatty(),
        enable_model_summary=False,
        default_root_dir=resume_dir,
    )
    if trainer.is_global_zero:
        run_id_file.write_text(mlflow.run_id)
        if not resuming:
            mlflow.log_hyperparams(_flat_params(p.model_dump(mode="json"), config.to_dict()))
    trainer.fit(module, datamodule=data, ckpt_path=last if resuming else None, weights_only=True)

    best = checkpoint.best_model_path or str(last)
    results = trainer.validate(
        module, datamodule=data, ckpt_path=best, weights_only=True, verbose=False
    )
    if not trainer.is_global_zero:
        return None
    val = {k.removeprefix("val/"): float(v) for k, v in results[0].items()}
    summary = _export(paths, checkpoint.dirpath, module, trainer, best, val)
    _log_to_mlflow(mlflow, Path(paths.out_dir), val)
    if (resume_dir / "dvclive").exists():
        live = Path(paths.live_dir)
        if live.exists():
            shutil.rmtree(live)
        shutil.copytree(resume_dir / "dvclive", live)
    shutil.rmtree(resume_dir, ignore_errors=True)
    return TrainResult(summary, mlflow.run_id, mlflow._tracking_uri)


def _flat_params(train: dict, model: dict) -> dict[str, Any]:
    out = {f"train.{k}": v for k, v in train.items()}
    out.update({f"model.{k}": v for k, v in model.items()})
    return out


def _export(paths, ckpt_dir, module, trainer, best, val) -> dict:
    """Write ``out_dir`` (weights, config, portable checkpoints, summary); returns the summary."""
    from pluto_dvc.model import save_model

    out = Path(paths.out_dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "checkpoints").mkdir(parents=True)
    for ckpt in sorted(Path(ckpt_dir).glob("*.ckpt")):
        export_checkpoint(ckpt, out / "checkpoints" / ckpt.name, ckpt_dir, "checkpoints")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    save_model(module.model, out)
    summary = {
        "mlflow_experiment": tracking.MLFLOW_EXPERIMENT,
        "epochs": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "best_checkpoint": Path(best).name,
        "num_parameters": sum(q.numel() for q in module.model.parameters()),
        "val": val,
    }
    write_json(out / "train_summary.json", summary, sort_keys=True)
    return summary


def _log_to_mlflow(mlflow, out: Path, val: dict[str, float]) -> None:
    """The exported model, its SHA-256 (tag ``tracking.MODEL_SHA256_TAG``) and the final metrics
    into the run."""
    client, run_id = mlflow.experiment, mlflow.run_id
    client.set_tag(run_id, tracking.MODEL_SHA256_TAG, tracking.model_sha256(out))
    client.log_artifact(run_id, str(out / "model.safetensors"), "model")
    client.log_artifact(run_id, str(out / "model_config.json"), "model")
    client.log_artifact(run_id, str(out / "train_summary.json"))
    for name, value in val.items():
        client.log_metric(run_id, f"final_val/{name}", value)
