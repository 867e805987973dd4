"""nuPlan's scenario filter: which scenarios of which logs the pipeline uses.

``run_selection(params)`` resolves the dataset and the filter, selects and writes
``data/scenarios.parquet`` plus a summary; ``select_scenarios`` is the library call behind it.
The order and meaning of every filter field: :mod:`pluto_dvc.selection.pipeline`; presets:
:mod:`pluto_dvc.filter_presets`.
"""

from __future__ import annotations

from pathlib import Path

from pluto_dvc.dataset_paths import resolve_dataset
from pluto_dvc.params import Params
from pluto_dvc.selection.config import PRESETS, ScenarioFilter, load_token_set, resolve_filter
from pluto_dvc.selection.output import read_scenarios, write_selection
from pluto_dvc.selection.pipeline import Selection, select_scenarios

SCENARIOS_PATH = Path("data/scenarios.parquet")
SUMMARY_PATH = Path("data/scenarios_summary.json")

__all__ = [
    "PRESETS",
    "SCENARIOS_PATH",
    "SUMMARY_PATH",
    "ScenarioFilter",
    "Selection",
    "describe",
    "load_token_set",
    "read_scenarios",
    "resolve_filter",
    "run_selection",
    "select_scenarios",
    "write_selection",
]


def run_selection(
    params: Params,
    scenarios_path: str | Path = SCENARIOS_PATH,
    summary_path: str | Path = SUMMARY_PATH,
    progress: bool = False,
) -> Selection:
    """Select with ``params.data`` / ``params.filter`` / ``params.worker`` and write the outputs."""
    dataset = resolve_dataset(params.data, params.synthetic)
    flt = resolve_filter(params.filter)
    selection = select_scenarios(dataset, flt, params.worker, progress=progress)
    write_selection(selection.table, selection.summary, scenarios_path, summary_path)
    return selection


def describe(selection: Selection) -> str:
    """One paragraph for the terminal."""
    s = selection.summary
    removed = ", ".join(f"{k}: -{v}" for k, v in s["removed_by_filter"].items()) or "none"
    return (
        f"selected {s['num_scenarios']} scenarios of {len(s['per_type'])} types from "
        f"{s['num_logs']} of {s['num_logs_read']} logs ({s['num_candidates']} candidates; "
        f"removed by filter: {removed})"
    )
