"""DVC stage `split`: log-level train/val/test split of the selection (params `split`).

Reads data/scenarios.parquet; writes data/splits.json and data/splits_summary.json (a DVC metric).
"""

from pluto_dvc.cli import run_stage
from pluto_dvc.selection import SCENARIOS_PATH
from pluto_dvc.splitting import run_split


def body(params, _args) -> None:
    _, summary = run_split(params.split, SCENARIOS_PATH)
    logs, scenarios = summary["num_logs"], summary["num_scenarios"]
    print(
        f"split ({summary['method']}): "
        + ", ".join(f"{p} {logs[p]} logs / {scenarios[p]} scenarios" for p in logs)
    )


if __name__ == "__main__":
    run_stage(__doc__, body)
