"""DVC stage `evaluate`: nuPlan's open-loop score of the trained model and of the baselines,
learning metrics, per-type tables, error-vs-horizon plots and scene pictures (params `evaluate`).

Reads models/, data/splits.json, data/scenarios.parquet, data/cache and the logs and maps; writes
reports/ (metrics.json is a DVC metric) and logs the evaluation into the training's MLflow run.
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.evaluation.stage import describe, run_evaluate


def body(params, _args) -> None:
    print(describe(run_evaluate(params)))


if __name__ == "__main__":
    run_stage(__doc__, body)
