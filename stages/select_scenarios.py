"""DVC stage `select_scenarios`: apply the scenario filter (params `data`, `filter`).

Writes data/scenarios.parquet and data/scenarios_summary.json (a DVC metric).
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.selection import describe, run_selection


def body(params, _args) -> None:
    print(describe(run_selection(params, progress=True)))


if __name__ == "__main__":
    run_stage(__doc__, body)
