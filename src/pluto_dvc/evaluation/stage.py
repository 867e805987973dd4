"""The ``evaluate`` stage: open-loop score of the model and the baselines, learning metrics,
reports and scene pictures, logged into the training's MLflow run.

Inputs: ``data/scenarios.parquet`` + ``data/splits.json`` (which 15 s scenarios), the logs and
maps (features of uncached frames), ``data/cache`` (cached frames, the feature params the model
was trained on, the learning-metric samples) and ``models/`` (the network). Outputs in
``reports/`` (written to a temporary folder and moved into place at the end)::

    metrics.json        OLS + components per planner, per-horizon errors, learning metrics, counts
    per_type.csv / .md  OLS and components per scenario type and planner
    scenarios.csv       every scenario's scores per planner
    plots/displacement_vs_horizon.csv, plots/heading_vs_horizon.csv
    scenes/scene_NN_<token>.png   the first scenarios (same names across experiments)
    scenes/worst_NN.png           the scenarios with the lowest model OLS
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pluto_dvc.errors import DataError
from pluto_dvc.evaluation import report
from pluto_dvc.evaluation.learning import learning_metrics, spread_indices
from pluto_dvc.evaluation.open_loop import OpenLoopConfig
from pluto_dvc.evaluation.planners import (
    ConstantVelocityPlanner,
    ExpertPlanner,
    Planner,
    ReferenceLinePlanner,
)
from pluto_dvc.evaluation.runner import (
    OpenLoopResult,
    ScenarioResult,
    inference_sample,
    run_open_loop,
)
from pluto_dvc.evaluation.scenarios import (
    ScenarioTiming,
    candidate_rows,
    choose_per_type,
    read_split_logs,
    usable_rows,
)
from pluto_dvc.params import FeatureParams, Params

SCENARIOS_PATH = Path("data/scenarios.parquet")
SPLITS_PATH = Path("data/splits.json")
CACHE_DIR = Path("data/cache")
MODEL_DIR = Path("models")
REPORTS_DIR = Path("reports")


def cache_features(meta: dict[str, Any], cache_dir: str | Path) -> FeatureParams:
    """The feature params a cache was built with (the model was trained on them)."""
    described = (meta.get("source") or {}).get("features")
    if not isinstance(described, dict):
        raise DataError(
            f"cache {cache_dir} records no feature params: rebuild it (dvc repro build_cache)"
        )
    try:
        return FeatureParams(**described)
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
        raise DataError(
            f"cache {cache_dir} was built with feature params this code cannot read ({exc}); "
            "rebuild it with `dvc repro build_cache`"
        ) from None


def cache_matches_code(meta: dict[str, Any], features: FeatureParams) -> bool:
    """True when the cache was built with these feature params and the current feature sources."""
    from pluto_dvc.cache.source import built_by_current_code

    return built_by_current_code(meta, features)


class CachedFrames:
    """(log_name, token) -> cached sample of a :class:`~pluto_dvc.cache.CacheDataset`."""

    def __init__(self, cache):
        self.cache = cache
        table = cache.table.select(["log_name", "token"]).to_pydict()
        self.index = {
            k: i for i, k in enumerate(zip(table["log_name"], table["token"], strict=True))
        }

    def __call__(self, log_name: str, token: str) -> dict[str, np.ndarray] | None:
        i = self.index.get((log_name, token))
        return None if i is None else self.cache[i]


def choose_scenarios(
    selection: pd.DataFrame,
    logs: list[str],
    params: Params,
    features: FeatureParams,
    data_root: Path,
) -> pd.DataFrame:
    """The evaluated scenarios (selection columns + ``frame``): those of the part's logs that fit
    in their log, at most ``scenarios_per_type`` per type."""
    from pluto_dvc.nuplan.log_reader import load_log

    ev = params.evaluate
    timing = ScenarioTiming.of(ev, features)
    rows = candidate_rows(selection, logs, ev.scenario_types)
    parts = []
    for _, group in rows.groupby("log_name", sort=True):
        log = load_log(data_root / group.log_path.iloc[0])
        frame = usable_rows(group, log, timing)
        parts.append(group.assign(frame=frame)[frame >= 0])
    usable = pd.concat(parts) if parts else rows.assign(frame=np.zeros(0, np.int64))
    chosen = choose_per_type(usable, ev.scenarios_per_type, ev.seed, ev.min_separation_s)
    if chosen.empty:
        raise DataError(
            f"no scenario of the '{ev.split_part}' logs fits a {ev.scenario_duration_s:g} s "
            f"evaluation window with {max(ev.comparison_horizons_s):g} s of future: check "
            "evaluate.scenario_types, evaluate.split_part or the log lengths"
        )
    return chosen


SHORT_NAMES = {"constant_velocity": "CV", "constant_velocity_reference_line": "CV-line"}


def _title(s: ScenarioResult, planners: list[str]) -> str:
    return "OLS " + " | ".join(f"{SHORT_NAMES.get(p, p)} {s.scores[p].score:.3f}" for p in planners)


def draw_pictures(
    scenarios: list[ScenarioResult], planners: list[str], params: Params, directory: Path
) -> list[Path]:
    """The first ``num_pictures`` scenarios and the ``num_worst_pictures`` lowest-scored ones."""
    from pluto_dvc.evaluation.scenes import draw_scene

    ev = params.evaluate
    kwargs = {
        "size_px": ev.picture_size_px,
        "radius_m": ev.picture_radius_m,
        "num_candidates": ev.picture_candidates,
    }
    paths = []
    for i, s in enumerate(scenarios[: ev.num_pictures]):
        path = directory / f"scene_{i:02d}_{s.token}.png"
        paths.append(draw_scene(s.picture, path, title=_title(s, planners), **kwargs))
    worst = sorted(scenarios, key=lambda s: (s.scores[planners[0]].score, s.token))
    for i, s in enumerate(worst[: ev.num_worst_pictures]):
        path = directory / f"worst_{i:02d}.png"
        paths.append(draw_scene(s.picture, path, title=_title(s, planners), **kwargs))
    return paths


def write_reports(
    directory: Path,
    result: OpenLoopResult,
    planners: list[str],
    config: OpenLoopConfig,
    learning: dict[str, float] | None,
    params: Params,
) -> dict[str, Any]:
    metrics = report.build_metrics(result, planners, config, learning)
    report.write_json(directory / "metrics.json", metrics)
    report.write_per_type(directory, report.per_type(result.scenarios, planners), planners)
    report.write_scenarios(directory / "scenarios.csv", result.scenarios, planners)
    report.write_horizon_plots(directory / "plots", result.scenarios, planners, config)
    (directory / "scenes").mkdir(parents=True, exist_ok=True)
    draw_pictures(result.scenarios, planners, params, directory / "scenes")
    return metrics


def _move_into(tmp: Path, target: Path) -> None:
    """Move every entry of ``tmp`` into ``target``, replacing same-named ones (other files in
    ``target`` stay), then remove ``tmp``."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(tmp.iterdir()):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        entry.rename(dest)
    tmp.rmdir()


def run_evaluate(
    params: Params,
    *,
    scenarios_path: str | Path = SCENARIOS_PATH,
    splits_path: str | Path = SPLITS_PATH,
    cache_dir: str | Path = CACHE_DIR,
    model_dir: str | Path = MODEL_DIR,
    reports_dir: str | Path = REPORTS_DIR,
    data_root: str | Path | None = None,
    maps_root: str | Path | None = None,
    model: Any = None,
    log_mlflow: bool = True,
    progress: Callable[[str], None] = print,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Evaluate, write ``reports_dir`` and log to MLflow; returns metrics.json's content.

    ``data_root`` / ``maps_root`` default to the dataset the selection records;
    ``model`` (a ``forward(PlutoBatch) -> PlutoOutput`` module) defaults to ``load_model(model_dir)``.
    ``timings``, when given, receives the seconds of each phase (they are not in metrics.json,
    which stays deterministic) and the frame counts.
    """
    from pluto_dvc.cache import CacheDataset
    from pluto_dvc.evaluation.model_planner import ModelPlanner
    from pluto_dvc.selection import read_dataset_record, read_scenarios

    start = time.perf_counter()
    ev = params.evaluate
    logs = read_split_logs(splits_path, ev.split_part)
    selection = read_scenarios(scenarios_path).to_pandas()
    if data_root is None or maps_root is None:
        dataset = read_dataset_record(scenarios_path)
        data_root = data_root or Path(dataset["data_root"])
        maps_root = maps_root or Path(dataset["maps_root"])
    cache = CacheDataset(cache_dir, log_names=logs)
    features = cache_features(cache.meta, cache_dir)
    lookup = CachedFrames(cache) if cache_matches_code(cache.meta, features) else None
    if lookup is None:
        progress(
            "note: the feature code or params differ from the cache's: every frame is built "
            "anew (rebuild the cache and retrain for consistent features)"
        )
    if model is None:
        if not (Path(model_dir) / "model.safetensors").is_file():
            raise DataError(f"{model_dir}/model.safetensors does not exist: run `dvc repro train`")
        from pluto_dvc.model import load_model

        model = load_model(model_dir)
    config = OpenLoopConfig.from_params(ev)
    timing = ScenarioTiming.of(ev, features)
    chosen = choose_scenarios(selection, logs, params, features, Path(data_root))
    progress(f"evaluating {len(chosen)} scenarios of {chosen.scenario_type.nunique()} types")

    model_planner = ModelPlanner(model, features.sample_interval_s, ev.picture_candidates)
    horizon = max(max(ev.comparison_horizons_s), features.future_horizon_s)
    step = features.sample_interval_s
    planners: list[Planner] = [
        model_planner,
        ConstantVelocityPlanner(horizon, step),
        ReferenceLinePlanner(horizon, step),
        ExpertPlanner(),
    ]
    names = [p.name for p in planners]
    result = run_open_loop(
        chosen, data_root, maps_root, features, planners, config, timing, ev.batch_size,
        lookup=lookup, progress=progress,
    )  # fmt: skip
    ols_s = time.perf_counter() - start

    indices = spread_indices(len(cache), ev.learning_max_samples)
    learning = learning_metrics(
        model_planner,
        lambda idx: [inference_sample(cache[int(i)]) for i in idx],
        indices,
        ev.batch_size,
        ev.learning_top_k,
        ev.learning_miss_threshold_m,
    )
    learning_s = time.perf_counter() - start - ols_s

    reports_dir = Path(reports_dir)
    tmp = reports_dir.with_name(f".{reports_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        metrics = write_reports(tmp, result, names, config, learning, params)
        _move_into(tmp, reports_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total_s = time.perf_counter() - start
    seconds = {
        "open_loop": ols_s,
        "open_loop_frames": float(sum(len(s.displacement[names[0]]) for s in result.scenarios)),
        "learning": learning_s,
        "learning_samples": float(len(indices)),
        "reports": total_s - ols_s - learning_s,
        "total": total_s,
    }
    if timings is not None:
        timings.update(seconds)
    progress(
        f"OLS {len(result.scenarios)} scenarios ({len(result.skipped)} skipped) in {ols_s:.1f} s, "
        f"learning metrics on {len(indices)} samples in {learning_s:.1f} s, total {total_s:.1f} s"
    )
    if log_mlflow:
        logged = {**metrics, "seconds": seconds}
        progress(report_to_mlflow(Path(model_dir), logged, reports_dir))
    return metrics


def report_to_mlflow(model_dir: Path, metrics: dict[str, Any], reports_dir: Path) -> str:
    from pluto_dvc.evaluation.tracking import log_to_training_run

    try:
        return log_to_training_run(model_dir, metrics, reports_dir)
    except Exception as exc:  # noqa: BLE001 - tracking must not fail the evaluation
        return f"MLflow: not logged ({type(exc).__name__}: {exc})"


def describe(metrics: dict[str, Any]) -> str:
    """The OLS table for the terminal."""
    lines = ["planner                            OLS    ADE    FDE    AHE    FHE   miss"]
    for name, row in metrics["ols"].items():
        lines.append(
            f"{name:32s} {row['score']:.3f}  {row['ade_score']:.3f}  {row['fde_score']:.3f}  "
            f"{row['ahe_score']:.3f}  {row['fhe_score']:.3f}  {row['miss_rate_score']:.3f}"
        )
    if "learning" in metrics:
        lines.append(
            "learning: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["learning"].items())
        )
    return "\n".join(lines)
