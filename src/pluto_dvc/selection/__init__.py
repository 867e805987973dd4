"""nuPlan's scenario filter: which scenarios of which logs the pipeline uses.

``run_selection(params)`` resolves the dataset and the filter, selects and writes
``data/scenarios.parquet`` plus a summary; ``select_scenarios`` is the library call behind it.
The order and meaning of every filter field: :mod:`pluto_dvc.selection.pipeline`; presets:
:mod:`pluto_dvc.filter_presets`.
"""

from __future__ import annotations

from pathlib import Path

from pluto_dvc.dataset_paths import DatasetPaths, resolve_dataset
from pluto_dvc.params import Params, WorkerParams
from pluto_dvc.selection.config import PRESETS, ScenarioFilter, load_token_set, resolve_filter
from pluto_dvc.selection.output import read_dataset_record, read_scenarios, write_selection
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
    "dataset_record",
    "read_dataset_record",
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
    state = Path(scenarios_path).parent / f".{Path(scenarios_path).name}.digests.json"
    logs = [dataset.data_root / p for p in sorted(set(selection.table.logs.rel_path))]
    record = dataset_record(dataset, logs, params.worker, state)
    write_selection(selection.table, selection.summary, scenarios_path, summary_path, record)
    return selection


def dataset_record(
    dataset: DatasetPaths, logs: list[Path], worker: WorkerParams, state: Path | None = None
) -> dict:
    """What the later stages need of the dataset: its roots, and the content digest of the
    selection's ``logs`` and of every map file (``data_root``-/``maps_root``-relative POSIX
    paths). ``state`` remembers digests of unchanged files between runs (see cache.digests)."""
    from pluto_dvc.cache.digests import file_digests

    maps = sorted(p for p in dataset.maps_root.rglob("*") if p.is_file())
    digests = file_digests([*logs, *maps], worker, state)
    return {
        "data_root": dataset.data_root.as_posix(),
        "maps_root": dataset.maps_root.as_posix(),
        "synthetic": dataset.synthetic,
        "logs": {p.relative_to(dataset.data_root).as_posix(): digests[p] for p in logs},
        "maps": {p.relative_to(dataset.maps_root).as_posix(): digests[p] for p in maps},
    }


def describe(selection: Selection) -> str:
    """One paragraph for the terminal."""
    s = selection.summary
    removed = ", ".join(f"{k}: -{v}" for k, v in s["removed_by_filter"].items()) or "none"
    return (
        f"selected {s['num_scenarios']} scenarios of {len(s['per_type'])} types from "
        f"{s['num_logs']} of {s['num_logs_read']} logs ({s['num_candidates']} candidates; "
        f"removed by filter: {removed})"
    )
