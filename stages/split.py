"""DVC stage `split`: log-level train/val/test split of the selection (params `split`).

Reads the selection; writes the split (JSON) and its summary (JSON, a DVC metric) to the paths
dvc.yaml passes.
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.splitting import run_split


def body(params, args) -> None:
    _, summary = run_split(
        params.split, args.scenarios, splits_path=args.splits, summary_path=args.summary
    )
    logs, scenarios = summary["num_logs"], summary["num_scenarios"]
    print(
        f"split ({summary['method']}): "
        + ", ".join(f"{p} {logs[p]} logs / {scenarios[p]} scenarios" for p in logs)
    )


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("scenarios", "input: the selection (parquet)"),
            ("splits", "output: the log lists of train / val / test (JSON)"),
            ("summary", "output: the split summary (JSON metric)"),
        ],
    )
