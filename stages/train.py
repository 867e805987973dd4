"""DVC stage `train`: PLUTO trained with Lightning on the cache and the split (params `train`, `model`).

Reads the cache and the split; writes the model folder (model.safetensors, model_config.json,
checkpoints/, train_summary.json) and the DVCLive folder (metrics.json, plots), at the paths
dvc.yaml passes. A killed run resumes from
its last completed epoch on the next `dvc repro` (see pluto_dvc.training.run).
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.training.run import TrainPaths, run_training


def body(params, args) -> None:
    paths = TrainPaths(
        cache_dir=args.cache, splits_path=args.splits, out_dir=args.models, live_dir=args.live
    )
    result = run_training(params, paths)
    if result:
        val = result.summary["val"]
        print(
            f"trained {result.summary['epochs']} epochs: val minADE "
            f"{val.get('min_ade', float('nan')):.3f} m, top-1 ADE "
            f"{val.get('top1_ade', float('nan')):.3f} m (constant velocity "
            f"{val.get('cv_ade', float('nan')):.3f} m); MLflow run {result.mlflow_run_id} "
            f"({result.mlflow_tracking_uri})"
        )


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("cache", "input: the feature cache folder"),
            ("splits", "input: the log split (JSON)"),
            ("models", "output: the model folder"),
            ("live", "output: the DVCLive folder (metrics.json, plots)"),
        ],
    )
