"""The evaluation's files in ``reports/``: aggregation of scenario scores into the open-loop score
(overall and per scenario type), metrics.json, the per-type table (CSV + markdown), the
per-scenario scores, and the error-vs-horizon plot data (CSV, one column per planner)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.evaluation.open_loop import OpenLoopConfig, horizon_errors
from pluto_dvc.evaluation.runner import OpenLoopResult, ScenarioResult

COMPONENTS = (
    "score",
    "ade_score",
    "fde_score",
    "ahe_score",
    "fhe_score",
    "miss_rate_score",
    "ade_m",
    "fde_m",
    "ahe_rad",
    "fhe_rad",
)
ALL_TYPES = "all"


def aggregate(scenarios: Sequence[ScenarioResult], planner: str) -> dict[str, float]:
    """Means over scenarios of one planner's scores and statistics (OLS = mean ``score``)."""
    rows = [s.scores[planner].as_dict() for s in scenarios]
    out: dict[str, float] = {"num_scenarios": len(rows)}
    for key in COMPONENTS:
        out[key] = float(np.mean([r[key] for r in rows])) if rows else float("nan")
    return out


def per_type(
    scenarios: Sequence[ScenarioResult], planners: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """{scenario type (and "all"): {planner: aggregate}} in sorted type order, "all" first."""
    types = sorted({s.scenario_type for s in scenarios})
    out = {ALL_TYPES: {p: aggregate(scenarios, p) for p in planners}}
    for t in types:
        chosen = [s for s in scenarios if s.scenario_type == t]
        out[t] = {p: aggregate(chosen, p) for p in planners}
    return out


def horizon_table(
    scenarios: Sequence[ScenarioResult], planners: Sequence[str], config: OpenLoopConfig
) -> dict[str, dict[str, float]]:
    """{planner: {"ade_3s": .., "fde_3s": .., "ahe_3s": .., "fhe_3s": .., "miss_rate_3s": ..}}:
    per horizon, the mean over every queried frame of every scenario."""
    out = {}
    thresholds = np.asarray(config.miss_thresholds_m)[:, None]
    for p in planners:
        if not scenarios:
            out[p] = {}
            continue
        disp = np.concatenate([s.displacement[p] for s in scenarios])
        head = np.concatenate([s.heading[p] for s in scenarios])
        e = horizon_errors(disp, head, config)
        row = {}
        for i, h in enumerate(config.horizons_s):
            tag = f"{h:g}s"
            row[f"ade_{tag}"] = float(e.ade[i].mean())
            row[f"fde_{tag}"] = float(e.fde[i].mean())
            row[f"ahe_{tag}"] = float(e.ahe[i].mean())
            row[f"fhe_{tag}"] = float(e.fhe[i].mean())
            row[f"miss_rate_{tag}"] = float((e.max_displacement[i] > thresholds[i]).mean())
        out[p] = row
    return out


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def build_metrics(
    result: OpenLoopResult,
    planners: Sequence[str],
    config: OpenLoopConfig,
    learning: dict[str, float] | None,
) -> dict[str, Any]:
    """The content of metrics.json (deterministic: no timings)."""
    types = per_type(result.scenarios, planners)
    metrics: dict[str, Any] = {
        "ols": types[ALL_TYPES],
        "horizons": horizon_table(result.scenarios, planners, config),
        "counts": {
            "scenarios": len(result.scenarios),
            "scenarios_skipped": len(result.skipped),
            "scenario_types": len(types) - 1,
            "frames": int(sum(len(s.displacement[planners[0]]) for s in result.scenarios)),
            "frames_from_cache": result.frames_cached,
            "frames_built": result.frames_built,
        },
    }
    if learning is not None:
        metrics["learning"] = learning
    return _round(metrics)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_per_type(
    directory: Path, types: dict[str, dict[str, dict[str, float]]], planners: Sequence[str]
) -> None:
    """per_type.csv (long: one row per type and planner) and per_type.md (OLS per planner, then
    the first planner's components)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "per_type.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario_type", "planner", "num_scenarios", *COMPONENTS])
        for t, by_planner in types.items():
            for p in planners:
                row = by_planner[p]
                writer.writerow(
                    [t, p, int(row["num_scenarios"]), *(f"{row[k]:.6f}" for k in COMPONENTS)]
                )
    lines = [
        "# Open-loop score per scenario type",
        "",
        "| scenario type | n | " + " | ".join(planners) + " |",
        "|---|---:|" + "---:|" * len(planners),
    ]
    for t, by_planner in types.items():
        n = int(by_planner[planners[0]]["num_scenarios"])
        cells = " | ".join(f"{by_planner[p]['score']:.4f}" for p in planners)
        lines.append(f"| {t} | {n} | {cells} |")
    first = planners[0]
    lines += [
        "",
        f"## Components of `{first}` (scores in [0, 1]; errors in m / rad)",
        "",
        "| scenario type | OLS | ADE | FDE | AHE | FHE | miss rate | ADE m | FDE m | AHE rad | FHE rad |",
        "|---|" + "---:|" * 10,
    ]
    for t, by_planner in types.items():
        row = by_planner[first]
        lines.append(f"| {t} | " + " | ".join(f"{row[k]:.4f}" for k in COMPONENTS) + " |")
    (directory / "per_type.md").write_text("\n".join(lines) + "\n")


def write_scenarios(
    path: Path, scenarios: Sequence[ScenarioResult], planners: Sequence[str]
) -> None:
    """One row per scenario and planner: its scores, statistics and miss rates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = None
        for s in scenarios:
            for p in planners:
                row = {
                    "log_name": s.log_name,
                    "token": s.token,
                    "scenario_type": s.scenario_type,
                    "planner": p,
                    **{k: round(v, 6) for k, v in s.scores[p].as_dict().items()},
                }
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)


def write_horizon_plots(
    directory: Path,
    scenarios: Sequence[ScenarioResult],
    planners: Sequence[str],
    config: OpenLoopConfig,
) -> None:
    """displacement_vs_horizon.csv / heading_vs_horizon.csv: per comparison time (s), the mean
    error of each planner over every queried frame (DVC plots: x = horizon_s, y = planners)."""
    directory.mkdir(parents=True, exist_ok=True)
    times = config.comparison_times_s
    for name, attr in (("displacement", "displacement"), ("heading", "heading")):
        with open(directory / f"{name}_vs_horizon.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["horizon_s", *planners])
            means = {}
            for p in planners:
                errs = [getattr(s, attr)[p] for s in scenarios]
                stacked = np.concatenate(errs) if errs else np.full((1, len(times)), np.nan)
                means[p] = stacked.mean(axis=0)
            for k, t in enumerate(times):
                writer.writerow([f"{t:g}", *(f"{means[p][k]:.6f}" for p in planners)])
