"""Benchmark: PLUTO feature building on ONE core with every feature on; prints one JSON object.

    .venv/bin/python benchmarks/bench_features.py                     # default synthetic data
    .venv/bin/python benchmarks/bench_features.py --data data/nuplan-synthetic
    .venv/bin/python benchmarks/bench_features.py --logs 2 --stride 5 --out benchmarks/results/features.json

Data: ``--data`` is a dataset folder in the synthetic layout (``<data>/nuplan-v1.1/splits/<split>``
and ``<data>/maps``), or give ``--logs-dir`` and ``--maps-root`` for a real nuPlan download. With
neither, the default synthetic dataset (``SyntheticParams()`` defaults) is generated once into a
temporary folder (``--keep`` keeps it and prints where).

Scenarios: the candidate frames of each log (nuPlan's rules: ``enumerate_scenarios``), every
``--stride``-th, built with ``FeatureParams()`` defaults (radius 120 m, 48 agents, reference lines,
static objects, 600 x 600 cost map, causal info). The process is pinned to one CPU and BLAS /
OpenMP threads are set to 1 before numpy is imported.

Figures: ``scenarios_per_s`` counts every built scenario (valid or FeatureError) over the wall
time spent in ``build()`` only; ``scenarios_per_cpu_s`` over the process CPU time of the same
calls (robust to other load on a shared machine: see ``load_average_1min``);
``scenarios_per_s_with_setup`` adds reading the logs and maps and the per-log / per-map
precomputation. ``component_cpu_ms`` is the mean CPU time per scenario of each part.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pluto_dvc.dataset_paths import synthetic_paths  # noqa: E402
from pluto_dvc.features import FeatureError, LogFeatureBuilder  # noqa: E402
from pluto_dvc.nuplan.log_reader import load_log  # noqa: E402
from pluto_dvc.nuplan.map_reader import MapsRoot  # noqa: E402
from pluto_dvc.nuplan.scenarios import enumerate_scenarios  # noqa: E402
from pluto_dvc.params import FeatureParams, SyntheticParams, WorkerParams  # noqa: E402


def _pin_one_core() -> int | None:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return None


def _dataset(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    """(logs_dir, maps_root, temporary folder to delete or None)."""
    if args.logs_dir:
        return Path(args.logs_dir), Path(args.maps_root), None
    if args.data:
        paths = synthetic_paths(SyntheticParams(output_dir=args.data, split=args.split))
        return paths.logs_dir, paths.maps_root, None
    from pluto_dvc.synthetic.dataset import synthesize_dataset  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="bench_features_"))
    params = SyntheticParams(output_dir=str(tmp / "nuplan-synthetic"))
    t0 = time.perf_counter()
    synthesize_dataset(params, WorkerParams(kind="processes"))
    print(f"synthesised the default dataset in {time.perf_counter() - t0:.0f} s", flush=True)
    paths = synthetic_paths(params)
    return paths.logs_dir, paths.maps_root, tmp


def run(args: argparse.Namespace) -> dict:
    cpu = _pin_one_core()
    logs_dir, maps_root, tmp = _dataset(args)
    try:
        return _measure(args, logs_dir, maps_root, cpu)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept the dataset in {tmp}", flush=True)


def _measure(args: argparse.Namespace, logs_dir: Path, maps_root: Path, cpu: int | None) -> dict:
    params = FeatureParams()
    log_paths = sorted(logs_dir.glob("*.db"))[: args.logs or None]
    if not log_paths:
        raise SystemExit(f"no .db files in {logs_dir}")
    maps = MapsRoot(maps_root)
    setup_s = defaultdict(float)
    components: dict[str, float] = defaultdict(float)
    reasons: Counter[str] = Counter()
    built = valid = 0
    build_s = build_cpu_s = 0.0
    sample_bytes: list[int] = []
    sizes: dict[str, list[int]] = defaultdict(list)
    for path in log_paths:
        t0 = time.perf_counter()
        log = load_log(path)
        t1 = time.perf_counter()
        nuplan_map = maps.load(log.meta.location)
        t2 = time.perf_counter()
        builder = LogFeatureBuilder(params, log, nuplan_map)
        t3 = time.perf_counter()
        setup_s["load_log"] += t1 - t0
        setup_s["load_map"] += t2 - t1
        setup_s["builder_init"] += t3 - t2
        frames = enumerate_scenarios(log).frame_index[:: args.stride]
        start, cpu_start = time.perf_counter(), time.process_time()
        for frame in frames.tolist():
            try:
                sample = builder.build(frame)
            except FeatureError as exc:
                reasons[exc.reason.split(":")[0]] += 1
            else:
                valid += 1
                sample_bytes.append(sum(a.nbytes for a in sample.values()))
                for key, n in (("agents", "agent.category"), ("polygons", "map.polygon_type")):
                    sizes[key].append(len(sample[n]))
                sizes["reference_lines"].append(len(sample["reference_line.valid_mask"]))
                sizes["static_objects"].append(len(sample["static_objects.valid_mask"]))
            built += 1
        build_s += time.perf_counter() - start
        build_cpu_s += time.process_time() - cpu_start
        for name, seconds in builder.timings.items():
            if name.startswith("init."):
                setup_s[name] += seconds
            else:
                components[name] += seconds
    total_setup = setup_s["load_log"] + setup_s["load_map"] + setup_s["builder_init"]
    return {
        "benchmark": "features",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu": cpu,
        },
        "one_core": cpu is not None,
        "params": "FeatureParams() defaults: every feature on, 600x600 cost map",
        "logs": len(log_paths),
        "stride": args.stride,
        "scenarios": built,
        "valid": valid,
        "failed": dict(reasons),
        "scenarios_per_s": round(built / build_s, 2) if build_s else None,
        "scenarios_per_cpu_s": round(built / build_cpu_s, 2) if build_cpu_s else None,
        "ms_per_scenario": round(1e3 * build_s / max(built, 1), 2),
        "cpu_ms_per_scenario": round(1e3 * build_cpu_s / max(built, 1), 2),
        "scenarios_per_s_with_setup": round(built / (build_s + total_setup), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "component_cpu_ms": {
            k: round(1e3 * v / max(built, 1), 3) for k, v in sorted(components.items())
        },
        "unaccounted_cpu_ms": round(
            1e3 * (build_cpu_s - sum(components.values())) / max(built, 1), 3
        ),
        "setup_s": {k: round(v, 3) for k, v in sorted(setup_s.items())},
        "sample_kib_mean": round(float(np.mean(sample_bytes)) / 1024, 1) if sample_bytes else None,
        "sizes_mean": {k: round(float(np.mean(v)), 1) for k, v in sorted(sizes.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="synthetic-layout dataset folder (default: generate one)")
    parser.add_argument("--split", default="mini", help="split folder of --data")
    parser.add_argument("--logs-dir", help="folder of .db logs (real nuPlan); needs --maps-root")
    parser.add_argument("--maps-root", help="maps root holding nuplan-maps-v1.0.json")
    parser.add_argument("--logs", type=int, default=0, help="use the first N logs (0 = all)")
    parser.add_argument("--stride", type=int, default=4, help="every k-th candidate scenario")
    parser.add_argument("--keep", action="store_true", help="keep a generated dataset")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if args.logs_dir and not args.maps_root:
        parser.error("--logs-dir needs --maps-root")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
