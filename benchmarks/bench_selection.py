"""Benchmark: scenario enumeration + filtering throughput (logs/s, scenarios/s).

    .venv/bin/python benchmarks/bench_selection.py                 # the default synthetic data
    .venv/bin/python benchmarks/bench_selection.py --copies 20     # the same logs, 20 times over
    .venv/bin/python benchmarks/bench_selection.py --factory 40    # 40 test-factory logs instead

Runs on the dataset named by params.yaml (``data`` / ``synthetic``; run ``pluto-dvc synthesize``
first for the default). ``--copies N`` links each log N times under new names so that more logs
are read (the per-log work is what scales to 15,000 logs). Each configuration is timed once after a
warm-up; the figures are per wall-clock second of the whole ``select_scenarios`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from pluto_dvc.dataset_paths import DatasetPaths, resolve_dataset
from pluto_dvc.errors import ParamsError
from pluto_dvc.params import FilterParams, WorkerParams, load_params
from pluto_dvc.selection import resolve_filter, select_scenarios

CONFIGS = {
    "all (pass 1 only)": FilterParams(),
    "types + caps": FilterParams(preset="challenge_14", num_scenarios_per_type=100),
    "quality (pass 2)": FilterParams(
        ego_displacement_minimum_m=2.0, ego_start_speed_threshold=1.0, ego_stop_speed_threshold=1.0
    ),
}


def _linked_copies(dataset: DatasetPaths, copies: int, root: Path) -> DatasetPaths:
    logs_dir = root / "nuplan-v1.1" / "splits" / "bench"
    logs_dir.mkdir(parents=True)
    for path in dataset.log_paths():
        for k in range(copies):
            os.symlink(path.resolve(), logs_dir / f"{path.stem}_copy{k:03d}.db")
    return DatasetPaths(root, logs_dir, dataset.maps_root, dataset.synthetic)


def _factory_dataset(num_logs: int, root: Path) -> DatasetPaths:
    from pluto_dvc.testing.log_factory import write_log  # noqa: PLC0415 - only for this mode

    logs_dir = root / "nuplan-v1.1" / "splits" / "bench"
    logs_dir.mkdir(parents=True)
    for i in range(num_logs):
        write_log(logs_dir, f"2021.07.16.20.{i // 60:02d}.{i % 60:02d}_veh-35_0_1", num_scenes=30)
    return DatasetPaths(root, logs_dir, root / "maps", True)


def _peak_rss_mb() -> int:
    """Peak resident memory of this (the main) process so far, MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _timed(dataset: DatasetPaths, flt, worker: WorkerParams) -> tuple[float, int, int]:
    """Seconds, candidates and selected scenarios of one run (an empty result counts as 0)."""
    start = time.perf_counter()
    try:
        sel = select_scenarios(dataset, flt, worker)
        candidates, selected = sel.summary["num_candidates"], len(sel)
    except ParamsError as exc:  # everything filtered out: still a timed run
        candidates = int(str(exc).split("(of ")[1].split()[0])
        selected = 0
    return time.perf_counter() - start, candidates, selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--copies", type=int, default=1, help="read every log this many times")
    parser.add_argument("--factory", type=int, default=0, help="use N log_factory logs instead")
    parser.add_argument("--workers", default="sequential,processes", help="worker kinds to time")
    args = parser.parse_args()

    params = load_params(args.params)
    with tempfile.TemporaryDirectory() as tmp:
        if args.factory:
            dataset = _factory_dataset(args.factory, Path(tmp))
        else:
            dataset = resolve_dataset(params.data, params.synthetic)
            if args.copies > 1:
                dataset = _linked_copies(dataset, args.copies, Path(tmp))
        num_logs = len(dataset.log_paths())
        print(f"{num_logs} logs in {dataset.logs_dir}")
        results = []
        for kind in args.workers.split(","):
            worker = WorkerParams(kind=kind, num_workers=params.worker.num_workers)
            for name, fp in CONFIGS.items():
                flt = resolve_filter(fp)
                _timed(dataset, flt, worker)  # warm-up (imports, page cache, pools)
                seconds, candidates, selected = _timed(dataset, flt, worker)
                row = {
                    "worker": kind,
                    "config": name,
                    "logs": num_logs,
                    "candidates": candidates,
                    "selected": selected,
                    "seconds": round(seconds, 3),
                    "logs_per_s": round(num_logs / seconds, 1),
                    "candidates_per_s": round(candidates / seconds),
                    "peak_rss_mb": _peak_rss_mb(),
                }
                results.append(row)
                print(
                    f"{kind:>10} | {name:<18} | {num_logs} logs, {row['candidates']} candidates -> "
                    f"{row['selected']} in {seconds:.2f} s: {row['logs_per_s']} logs/s, "
                    f"{row['candidates_per_s']} scenarios/s (peak RSS {row['peak_rss_mb']} MB)"
                )
        print(json.dumps(results))


if __name__ == "__main__":
    main()
