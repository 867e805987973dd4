"""DVC stage `evaluate`: nuPlan's open-loop score of the trained model and of the baselines,
learning metrics, per-type tables, error-vs-horizon plots and scene pictures (params `evaluate`).

Reads the model, the split, the selection, the cache and the logs and maps the selection records
(paths from dvc.yaml); writes the reports folder (metrics.json is a DVC metric) and logs the
evaluation into the training's MLflow run.
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.evaluation.stage import describe, run_evaluate


def body(params, args) -> None:
    report = run_evaluate(
        params,
        scenarios_path=args.scenarios,
        splits_path=args.splits,
        cache_dir=args.cache,
        model_dir=args.models,
        reports_dir=args.reports,
    )
    print(describe(report))


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("scenarios", "input: the selection (parquet; records the logs and maps)"),
            ("splits", "input: the log split (JSON)"),
            ("cache", "input: the feature cache folder"),
            ("models", "input: the model folder"),
            ("reports", "output: the reports folder"),
        ],
    )
