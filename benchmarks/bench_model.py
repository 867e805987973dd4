"""Benchmark: PLUTO network throughput and peak memory; prints one JSON object.

    .venv/bin/python benchmarks/bench_model.py                      # data/cache, CPU, 2 threads
    .venv/bin/python benchmarks/bench_model.py --cache /work/main/data/cache --compile
    .venv/bin/python benchmarks/bench_model.py --device cuda --threads 16

For each preset (``small``, ``pluto``) and batch size (4, 32): forward samples/s (eval mode,
no grad) and forward+backward samples/s (train mode: dropout, drop path, state dropout; the loss
is a plain sum over every output, no optimiser step, no contrastive augmentation), and the peak
memory of the measured passes. ``*_samples_per_s`` is over all timed batches;
``*_median_samples_per_s`` the median of the per-batch rates (on a machine shared with other jobs,
robust to their bursts); ``*_samples_per_cpu_s`` divides by the process's CPU time instead. Batches are real cache samples drawn at random (seeded), decoded
before timing (the cost map, unused by the network, is dropped). Each configuration runs in its
own process so that peak RSS (CPU) is its own. With ``--compile`` every configuration is also
measured under ``torch.compile(dynamic=True)`` (object counts change from batch to batch);
compile time is reported apart and excluded from the rates.

Reference (spec/pluto.md, issue 8): the original network with natten's CPU kernels on the same
2-core CPU: about 13 samples/s forward+backward and 27 forward at batch 32; target >= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pluto_dvc.cache.dataset import CacheDataset
from pluto_dvc.model import ModelConfig, PlutoBatch, PlutoModel

ORIGINAL = {"forward_samples_per_s": 27.0, "train_samples_per_s": 13.0, "batch_size": 32}


def _batches(cache: CacheDataset, batch_size: int, count: int, seed: int) -> list[PlutoBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        flat = cache.batch(sorted(rng.choice(len(cache), batch_size, replace=False).tolist()))
        flat.pop("cost_maps", None)
        out.append(PlutoBatch.from_flat(flat))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rate(run, batches: list[PlutoBatch], device: torch.device, warmup: int) -> dict[str, float]:
    """Samples per wall second over all timed batches, the median of the per-batch rates
    (robust to bursts of other jobs on a shared machine), and samples per process-CPU second."""
    for b in batches[:warmup]:
        run(b)
    rates, wall, cpu = [], 0.0, time.process_time()
    for b in batches[warmup:]:
        _sync(device)
        start = time.perf_counter()
        run(b)
        _sync(device)
        seconds = time.perf_counter() - start
        wall += seconds
        rates.append(b.batch_size / seconds)
    samples = sum(b.batch_size for b in batches[warmup:])
    return {
        "samples_per_s": samples / wall,
        "median_samples_per_s": float(np.median(rates)),
        "samples_per_cpu_s": samples / (time.process_time() - cpu),
    }


def measure(args: argparse.Namespace) -> dict:
    """One configuration (preset, batch size, compiled or not), in this process."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cache = CacheDataset(args.cache, verify=False)
    config = ModelConfig.for_cache(cache, preset=args.preset)
    model = PlutoModel(config).to(device)
    batches = [b.to(device) for b in _batches(cache, args.batch, args.warmup + args.iters, 0)]
    net = model
    result: dict = {
        "preset": args.preset,
        "batch_size": args.batch,
        "parameters": model.num_parameters(),
        "compiled": args.compiled,
    }
    if args.compiled:
        net = torch.compile(model, dynamic=True)
        start = time.perf_counter()
        with torch.no_grad():
            model.eval()
            net(batches[0])
        model.train()
        out = net(batches[0])
        sum(v.float().sum() for v in vars(out).values() if v is not None).backward()
        model.zero_grad(set_to_none=True)
        result["compile_s"] = round(time.perf_counter() - start, 1)
    base = _peak_mb(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = 0.0

    def forward(b: PlutoBatch) -> None:
        with torch.no_grad():
            net(b)

    def train_step(b: PlutoBatch) -> None:
        out = net(b)
        sum(v.float().square().mean() for v in vars(out).values() if v is not None).backward()
        model.zero_grad(set_to_none=True)

    for mode, run in (("forward", forward), ("train", train_step)):
        model.train(mode == "train")
        for key, value in _rate(run, batches, device, args.warmup).items():
            result[f"{mode}_{key}"] = round(value, 1)
        result[f"{mode}_peak_mb"] = round(_peak_mb(device) - base, 1)
    result["peak_mb_note"] = (
        "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "process peak RSS growth over the loaded data and model (ru_maxrss)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="data/cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=["small", "pluto"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 32])
    parser.add_argument("--iters", type=int, default=8, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also under torch.compile")
    parser.add_argument("--out", help="also write the JSON here")
    # internal: one configuration in a child process
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.preset:
        print(json.dumps(measure(args)))
        return
    if not (Path(args.cache) / "manifest.parquet").is_file():
        sys.exit(f"no cache at {args.cache}: run `dvc repro build_cache` or pass --cache")
    runs = []
    for preset in args.presets:
        for batch in args.batch_sizes:
            for compiled in [False, True] if args.compile else [False]:
                cmd = [
                    sys.executable, __file__, "--cache", args.cache, "--device", args.device,
                    "--threads", str(args.threads), "--iters", str(args.iters),
                    "--warmup", str(args.warmup), "--preset", preset, "--batch", str(batch),
                ]  # fmt: skip
                if compiled:
                    cmd.append("--compiled")
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    runs.append({"preset": preset, "batch_size": batch, "compiled": compiled,
                                 "error": done.stderr.strip().splitlines()[-1:]})  # fmt: skip
                else:
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    pluto32 = [
        r for r in runs
        if r.get("preset") == "pluto" and r.get("batch_size") == 32 and "error" not in r
    ]  # fmt: skip
    speedup = {
        ("compiled" if r["compiled"] else "eager"): {
            f"{mode}_x{suffix}": round(
                r[f"{mode}_{prefix}samples_per_s"] / ORIGINAL[f"{mode}_samples_per_s"], 2
            )
            for mode in ("forward", "train")
            for prefix, suffix in (("", ""), ("median_", "_median"))
        }
        for r in pluto32
    }
    report = {
        "benchmark": "model",
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cache": str(args.cache),
        "iters": args.iters,
        "runs": runs,
        "original_pluto_batch32": ORIGINAL,
        "pluto_batch32_vs_original": speedup,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
