"""Training throughput next to the loader's, as JSON (so it is plain whether loading is the limit).

    python benchmarks/bench_train.py --cache-dir data/cache --splits data/splits.json \
        [--batches 3] [--batch-size 32] [--device cpu|cuda] [--workers 0] [--presets small pluto]

For each model preset and contrastive off / on: training samples/s of full steps (forward with
every loss, backward, gradient clip, AdamW step) on batches already in memory (after one warm-up
step); and the loader's samples/s (cache read + decode + batch, ``--workers`` processes).
Contrastive steps count the anchors only (each anchor costs three samples of network work).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from pluto_dvc.model import ModelConfig
from pluto_dvc.params import TrainParams
from pluto_dvc.training.data import PlutoDataModule
from pluto_dvc.training.module import PlutoTrainingModule
from pluto_dvc.training.run import data_facts


def loader_rate(data: PlutoDataModule, batches: int) -> float:
    it = iter(data.train_dataloader())
    next(it)  # workers start, shards verified
    start = time.perf_counter()
    n = sum(next(it).batch_size for _ in range(batches))
    return n / (time.perf_counter() - start)


def train_rate(module: PlutoTrainingModule, batches: list, device: str) -> float:
    module.to(device).train()
    module.log_dict = lambda *a, **k: None
    module.log = lambda *a, **k: None
    optim = torch.optim.AdamW(module.parameters(), lr=1e-4)
    on_device = [b.to(device) for b in batches]

    def step(batch) -> None:
        loss = module._step(batch, "train")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        optim.step()

    step(on_device[0])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in on_device[1:]:
        step(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return sum(b.batch_size for b in on_device[1:]) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--splits", default="data/splits.json")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--presets", nargs="+", default=["small", "pluto"])
    args = ap.parse_args()

    data = PlutoDataModule(args.cache_dir, args.splits, args.batch_size, num_workers=args.workers)
    data.setup()
    facts = data_facts(data.meta)
    out = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "batch_size": args.batch_size,
        "loader_workers": args.workers,
        "loader_samples_per_s": round(loader_rate(data, args.batches), 2),
        "train_samples_per_s": {},
    }
    it = iter(data.loader("train", shuffle=False))
    batches = [next(it) for _ in range(args.batches + 1)]
    for preset in args.presets:
        for contrastive in (False, True):
            torch.manual_seed(0)
            config = ModelConfig.for_cache(data.meta, preset=preset, hidden_proj=True)
            params = TrainParams(contrastive=contrastive)
            module = PlutoTrainingModule.create(config, params, facts, 1)
            key = f"{preset}{'+contrastive' if contrastive else ''}"
            out["train_samples_per_s"][key] = round(train_rate(module, batches, args.device), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
