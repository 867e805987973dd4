"""DVC stage `select_scenarios`: apply the scenario filter (params `data`, `filter`).

Reads the logs of the dataset the params name; writes the selection (parquet) and its summary
(JSON, a DVC metric) to the paths dvc.yaml passes.
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.selection import describe, run_selection


def body(params, args) -> None:
    report = run_selection(
        params, scenarios_path=args.scenarios, summary_path=args.summary, progress=True
    )
    print(describe(report))


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("scenarios", "output: the selected scenarios (parquet)"),
            ("summary", "output: the selection summary (JSON metric)"),
        ],
    )
