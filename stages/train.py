"""DVC stage `train`: PLUTO trained with Lightning on the cache and the split (params `train`, `model`).

Reads data/cache and data/splits.json; writes models/ (model.safetensors, model_config.json,
checkpoints/, train_summary.json) and dvclive/ (metrics.json, plots). A killed run resumes from
its last completed epoch on the next `dvc repro` (see pluto_dvc.training.run).
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.training.run import run_training


def body(params, _args) -> None:
    summary = run_training(params)
    if summary:
        val = summary["val"]
        print(
            f"trained {summary['epochs']} epochs: val minADE {val.get('min_ade', float('nan')):.3f} m, "
            f"top-1 ADE {val.get('top1_ade', float('nan')):.3f} m (constant velocity "
            f"{val.get('cv_ade', float('nan')):.3f} m); MLflow run {summary['mlflow_run_id']}"
        )


if __name__ == "__main__":
    run_stage(__doc__, body)
