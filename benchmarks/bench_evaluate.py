"""Benchmark: the evaluate stage on existing pipeline outputs; prints one JSON object.

    .venv/bin/python benchmarks/bench_evaluate.py --data /work/main/data [--model models/]

``--data`` holds the default pipeline's outputs (cache/, splits.json, scenarios.parquet,
nuplan-synthetic/). Without ``--model`` an untrained network of the ``model.preset`` (seed 0)
is evaluated: the cost is the same, the scores are not meaningful. Reports go to a temporary
folder (``--reports`` keeps them); MLflow is not touched. Figures: seconds of the open-loop part
(features, 4 planners, scoring), of the learning metrics, of the reports (tables, pictures), and
frames / samples per second; ``load_average_1min`` says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="folder with the pipeline's data outputs")
    parser.add_argument("--model", default=None, help="folder with model.safetensors")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    parser.add_argument("--reports", default=None, help="keep the reports here")
    args = parser.parse_args()

    import torch

    from pluto_dvc.evaluation.stage import run_evaluate
    from pluto_dvc.model import load_model
    from pluto_dvc.model.model import PlutoModel
    from pluto_dvc.params import load_params

    params = load_params(args.params, args.overrides)
    data = Path(args.data)
    if args.model:
        model = load_model(args.model)
    else:
        torch.manual_seed(0)
        model = PlutoModel(params.model.config(data / "cache"))
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        metrics = run_evaluate(
            params,
            scenarios_path=data / "scenarios.parquet",
            splits_path=data / "splits.json",
            cache_dir=data / "cache",
            reports_dir=Path(args.reports or Path(tmp) / "reports"),
            data_root=data / "nuplan-synthetic",
            maps_root=data / "nuplan-synthetic" / "maps",
            model=model,
            log_mlflow=False,
            progress=lambda _: None,
            timings=timings,
        )
    out = {
        "scenarios": metrics["counts"]["scenarios"],
        "frames": metrics["counts"]["frames"],
        "frames_from_cache": metrics["counts"]["frames_from_cache"],
        "seconds": {
            k: round(v, 2) for k, v in timings.items() if not k.endswith(("frames", "samples"))
        },
        "open_loop_frames_per_s": round(timings["open_loop_frames"] / timings["open_loop"], 2),
        "learning_samples_per_s": round(
            timings["learning_samples"] / max(timings["learning"], 1e-9), 2
        ),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
