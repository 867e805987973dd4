"""``select_scenarios``: nuPlan's scenario filter over a dataset, in the devkit's order.

1. ``log_names`` keeps those .db files; ``map_names`` skips logs of other maps.
2. Pass 1 (per log, parallel): enumerate candidates; ``scenario_types``, ``scenario_tokens``,
   ``remove_invalid_goals``.
3. On the compact table (main process, seeded): ``num_scenarios_per_type``,
   ``limit_total_scenarios``, ``timestamp_threshold_s``. Count caps therefore run before the
   quality filters, and the final count can be below the cap.
4. Pass 2 (per log with survivors, parallel): ``ego_displacement_minimum_m``,
   ``ego_start_speed_threshold``, ``ego_stop_speed_threshold``, ``token_set_path`` +
   ``fraction_in_token_set_threshold``, ``ego_route_radius``.
5. Sort by token; shuffle with ``filter.seed`` if ``shuffle``.
Workers only ever see one log; results are consumed in input order, so the output is identical
for every worker kind and count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.dataset_paths import DatasetPaths
from pluto_dvc.errors import DataError, ParamsError
from pluto_dvc.params import WorkerParams
from pluto_dvc.selection import caps
from pluto_dvc.selection.candidates import EnumerateTask, enumerate_log
from pluto_dvc.selection.config import ScenarioFilter, load_token_set
from pluto_dvc.selection.quality import QUALITY_FILTERS, QualitySettings, QualityTask, check_log
from pluto_dvc.selection.table import CandidateTable, TableBuilder
from pluto_dvc.workers import run_per_log

# Hints for the empty-selection message: what to change when a filter removed everything.
_HINTS = {
    "log_names": "check the names against the .db files of the split",
    "map_names": "no log of the split drives on those maps",
    "scenario_types": "the logs have no frames tagged with those types",
    "scenario_tokens": "the tokens are not frames of usable scenes of these logs "
    "(the Val14 tokens exist only in real nuPlan)",
    "remove_invalid_goals": "no usable scene has a mission goal; set remove_invalid_goals: false",
    "timestamp_threshold_s": "lower it",
    "ego_displacement_minimum_m": "lower it",
    "ego_start_speed_threshold": "no ego start through that speed; lower it or set null",
    "ego_stop_speed_threshold": "no ego stop through that speed; lower it or set null",
    "token_set": "lower fraction_in_token_set_threshold or check the token set file",
    "ego_route_radius": "raise it (or check that the maps match the logs)",
}


@dataclass
class Selection:
    """The selected scenarios in output order plus the summary (counts per type/log/map/filter).

    ``table`` rows are the scenarios; its ``logs`` index every log that was read.
    """

    table: CandidateTable
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)


class _Trace:
    """Counts what each filter removed (scenarios, or whole logs for log/map names)."""

    def __init__(self) -> None:
        self.removed: dict[str, int] = {}
        self.removed_logs: dict[str, int] = {}
        self.remaining: list[tuple[str, int]] = []

    def step(self, name: str, before: int, after: int) -> None:
        self.removed[name] = self.removed.get(name, 0) + before - after
        self.remaining.append((name, after))


def select_scenarios(
    dataset: DatasetPaths, flt: ScenarioFilter, worker: WorkerParams, progress: bool = False
) -> Selection:
    """Apply ``flt`` to the dataset's logs; raise ParamsError/DataError on an empty result."""
    trace = _Trace()
    paths = _select_logs(dataset, flt, trace)
    _check_inputs(dataset, flt)
    table, enumerated = _pass_one(dataset, paths, flt, worker, trace, progress)
    rng = np.random.default_rng(flt.seed)
    table = _global_caps(table, flt, rng, trace)
    if flt.needs_ego and len(table):
        table = _pass_two(table, flt, dataset, worker, trace, progress)
    table = table.take(caps.final_order(table.token, flt.shuffle, rng))
    if len(table) == 0:
        raise _empty_error(enumerated, trace, flt.preset)
    return Selection(table=table, summary=_summary(table, flt, enumerated, trace))


def _select_logs(dataset: DatasetPaths, flt: ScenarioFilter, trace: _Trace) -> list[Path]:
    paths = dataset.log_paths()
    if flt.log_names is None:
        return paths
    wanted = set(flt.log_names)
    kept = [p for p in paths if p.stem in wanted]
    trace.removed_logs["log_names"] = len(paths) - len(kept)
    if not kept:
        missing = sorted(wanted)[:5]
        raise ParamsError(
            f"filter.log_names names no log of {dataset.logs_dir} (e.g. {missing}); "
            f"{_HINTS['log_names']} (first there: {paths[0].stem})"
        )
    return kept


def _check_inputs(dataset: DatasetPaths, flt: ScenarioFilter) -> None:
    """Fail before any work: a bad token set file, a missing maps root for the route filter.

    (Workers load the token set from the file themselves, once per process.)
    """
    if flt.ego_route_radius is not None and not dataset.maps_root.is_dir():
        raise DataError(
            f"filter.ego_route_radius needs the maps, but the maps root {dataset.maps_root} does "
            "not exist: set data.maps_root / NUPLAN_MAPS_ROOT (or ego_route_radius: null)"
        )
    if flt.token_set_path is not None:
        load_token_set(flt.token_set_path)


def _pass_one(
    dataset: DatasetPaths,
    paths: list[Path],
    flt: ScenarioFilter,
    worker: WorkerParams,
    trace: _Trace,
    progress: bool,
) -> tuple[CandidateTable, int]:
    tokens = None
    if flt.scenario_tokens is not None:
        raw = b"".join(bytes.fromhex(t) for t in flt.scenario_tokens)
        tokens = np.unique(np.frombuffer(raw, dtype=">u8").astype(np.uint64))
    tasks = [
        EnumerateTask(
            path=str(p),
            rel_path=_relative(p, dataset.data_root),
            scenario_types=flt.scenario_types,
            scenario_tokens=tokens,
            map_names=flt.map_names,
            remove_invalid_goals=flt.remove_invalid_goals,
        )
        for p in paths
    ]
    builder = TableBuilder([t.path for t in tasks])
    enumerated, map_skipped = 0, 0
    removed = dict.fromkeys(_sql_filters(flt), 0)
    results = run_per_log(enumerate_log, tasks, worker)
    for part in _progress(results, len(tasks), "enumerate", progress):
        builder.add(part)
        enumerated += part.num_enumerated
        map_skipped += part.map_skipped
        for name in removed:
            removed[name] += part.removed.get(name, 0)
    if flt.map_names is not None:
        trace.removed_logs["map_names"] = map_skipped
        if map_skipped == len(tasks):
            raise ParamsError(
                f"filter.map_names {list(flt.map_names)} removed every log: "
                f"{_HINTS['map_names']} ({dataset.logs_dir})"
            )
    remaining = enumerated
    for name, count in removed.items():
        trace.step(name, remaining, remaining - count)
        remaining -= count
    return builder.build(), enumerated


def _sql_filters(flt: ScenarioFilter) -> list[str]:
    names = []
    if flt.scenario_types is not None:
        names.append("scenario_types")
    if flt.scenario_tokens is not None:
        names.append("scenario_tokens")
    if flt.remove_invalid_goals:
        names.append("remove_invalid_goals")
    return names


def _global_caps(
    table: CandidateTable, flt: ScenarioFilter, rng: np.random.Generator, trace: _Trace
) -> CandidateTable:
    if flt.num_scenarios_per_type is not None:
        rows = caps.num_scenarios_per_type(
            table.type_code, flt.num_scenarios_per_type, flt.shuffle, rng
        )
        trace.step("num_scenarios_per_type", len(table), len(rows))
        table = table.take(rows)
    if flt.limit_total_scenarios is not None:
        rows = caps.limit_total_scenarios(
            table.type_code,
            table.token,
            table.unknown_code,
            flt.limit_total_scenarios,
            flt.shuffle,
            rng,
        )
        trace.step("limit_total_scenarios", len(table), len(rows))
        table = table.take(rows)
    if flt.timestamp_threshold_s is not None:
        rows = caps.timestamp_threshold(
            table.type_code, table.timestamp_us, flt.timestamp_threshold_s
        )
        trace.step("timestamp_threshold_s", len(table), len(rows))
        table = table.take(rows)
    return table


def _pass_two(
    table: CandidateTable,
    flt: ScenarioFilter,
    dataset: DatasetPaths,
    worker: WorkerParams,
    trace: _Trace,
    progress: bool,
) -> CandidateTable:
    settings = QualitySettings(
        ego_displacement_minimum_m=flt.ego_displacement_minimum_m,
        ego_start_speed_threshold=flt.ego_start_speed_threshold,
        ego_stop_speed_threshold=flt.ego_stop_speed_threshold,
        speed_noise_tolerance=flt.speed_noise_tolerance,
        token_set_path=flt.token_set_path,
        fraction_in_token_set_threshold=flt.fraction_in_token_set_threshold,
        ego_route_radius=flt.ego_route_radius,
        expand_scenarios=flt.expand_scenarios,
        maps_root=str(dataset.maps_root),
    )
    unknown = table.unknown_code
    order = np.argsort(table.log, kind="stable")  # rows grouped by log, table order inside
    logs, starts = np.unique(table.log[order], return_index=True)
    bounds = np.append(starts, len(order))
    groups = [order[bounds[i] : bounds[i + 1]] for i in range(len(logs))]
    tasks = [
        QualityTask(
            path=table.logs.path[log],
            token=table.token[rows],
            tagged=table.type_code[rows] != (-1 if unknown is None else unknown),
            settings=settings,
        )
        for log, rows in zip(logs, groups, strict=True)
    ]
    passed = {name: np.ones(len(table), dtype=bool) for name in QUALITY_FILTERS}
    results = run_per_log(check_log, tasks, worker)
    for rows, result in zip(
        groups, _progress(results, len(tasks), "quality", progress), strict=True
    ):
        for name, mask in result.items():
            passed[name][rows] = mask
    keep = np.ones(len(table), dtype=bool)
    enabled = [n for n in QUALITY_FILTERS if n in _enabled_quality(flt)]
    for name in enabled:
        before = int(keep.sum())
        keep &= passed[name]
        trace.step(name, before, int(keep.sum()))
    return table.take(np.flatnonzero(keep))


def _enabled_quality(flt: ScenarioFilter) -> set[str]:
    enabled = {
        "ego_displacement_minimum_m": flt.ego_displacement_minimum_m is not None,
        "ego_start_speed_threshold": flt.ego_start_speed_threshold is not None,
        "ego_stop_speed_threshold": flt.ego_stop_speed_threshold is not None,
        "token_set": flt.token_set_path is not None,
        "ego_route_radius": flt.ego_route_radius is not None,
    }
    return {k for k, v in enabled.items() if v}


def _progress(items, total: int, what: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit="log")


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the data root (POSIX), so the selection moves with the data.

    Symlinks are kept (a linked split folder stays under the root); a log outside the root is
    named by its file name.
    """
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return path.name


def _empty_error(enumerated: int, trace: _Trace, preset: str) -> Exception:
    if enumerated == 0:
        return DataError(
            "the logs hold no candidate scenario at all: scenarios come from frames of usable "
            "scenes (a log's first two and last two scenes, ordered by name, are never used), so "
            "each log needs at least 5 scenes"
        )
    culprit, before = next(
        ((name, prev) for (name, after), prev in _with_previous(trace, enumerated) if after == 0),
        ("?", enumerated),
    )
    where = "filter.token_set_path" if culprit == "token_set" else f"filter.{culprit}"
    if preset:
        where += f" (with filter.preset '{preset}')"
    return ParamsError(
        f"the selection is empty: {where} removed the last {before} scenario(s) "
        f"(of {enumerated} candidates); {_HINTS.get(culprit, 'relax it')}. "
        f"Scenarios left after each filter: {dict(trace.remaining)}"
    )


def _with_previous(trace: _Trace, start: int):
    prev = start
    for name, after in trace.remaining:
        yield (name, after), prev
        prev = after


def _summary(
    table: CandidateTable, flt: ScenarioFilter, enumerated: int, trace: _Trace
) -> dict[str, Any]:
    logs = table.logs
    per_log = np.bincount(table.log, minlength=len(logs.log_name))
    per_map: dict[str, int] = {}
    for name, count in zip(logs.map_name, per_log, strict=True):
        if count:
            per_map[name] = per_map.get(name, 0) + int(count)
    return {
        "num_scenarios": len(table),
        "num_logs": int(np.count_nonzero(per_log)),
        "num_logs_read": len(logs.log_name),
        "num_candidates": enumerated,
        "removed_logs_by_filter": trace.removed_logs,
        "removed_by_filter": trace.removed,
        "per_type": caps.type_counts(table.type_code, table.type_names),
        "per_map": dict(sorted(per_map.items())),
        "per_log": {
            name: int(c) for name, c in sorted(zip(logs.log_name, per_log, strict=True)) if c
        },
        "filter": flt.describe(),
    }
