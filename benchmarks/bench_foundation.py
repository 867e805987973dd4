"""Foundation benchmarks, printed as JSON: synthesize the default dataset, load one log's arrays,
open a map and build its index.

    python benchmarks/bench_foundation.py [--out DIR] [--workers N] [--repeat 5]

The default synthetic parameters come from params.yaml's defaults (the schema), written to a
temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pluto_dvc.dataset_paths import synthetic_paths
from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.map_reader import MapsRoot, NuPlanMap
from pluto_dvc.params import SyntheticParams, WorkerParams
from pluto_dvc.synthetic.dataset import synthesize_dataset


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="", help="dataset folder (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "nuplan-synthetic")
        params = SyntheticParams(output_dir=str(out))
        worker = WorkerParams(kind="processes", num_workers=args.workers)
        t0 = time.perf_counter()
        summary = synthesize_dataset(params, worker).to_json()
        synth_s = time.perf_counter() - t0

        paths = synthetic_paths(params)
        logs = paths.log_paths()
        biggest = max(logs, key=lambda p: p.stat().st_size)
        load_s, log = _timed(lambda: load_log(biggest), args.repeat)

        location = log.meta.location
        gpkg = MapsRoot(paths.maps_root).gpkg_path(location)
        open_s, nmap = _timed(lambda: NuPlanMap.from_gpkg(gpkg, location), args.repeat)
        rng = np.random.default_rng(0)
        idx = rng.integers(0, log.num_frames, 500)
        t0 = time.perf_counter()
        for i in idx:
            nmap.query_radius(log.ego.x[i], log.ego.y[i], 120.0)
        query_ms = (time.perf_counter() - t0) / len(idx) * 1e3

        print(
            json.dumps(
                {
                    "synthesize_default": {
                        "seconds": round(synth_s, 2),
                        "workers": worker.num_workers or "all cores",
                        "num_logs": summary["num_logs"],
                        "num_frames": summary["num_frames"],
                        "num_boxes": summary["num_boxes"],
                        "scenario_types": len(summary["tags_per_type"]),
                        "bytes_on_disk": sum(
                            f.stat().st_size for f in out.rglob("*") if f.is_file()
                        ),
                    },
                    "load_log": {
                        "seconds_median": round(load_s, 4),
                        "frames": log.num_frames,
                        "boxes": log.num_boxes,
                        "db_bytes": biggest.stat().st_size,
                    },
                    "open_map_and_index": {
                        "seconds_median": round(open_s, 4),
                        "location": location,
                        "lanes": len(nmap.lanes),
                        "lane_connectors": len(nmap.lane_connectors),
                        "radius_query_120m_ms": round(query_ms, 3),
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
