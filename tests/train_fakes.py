"""Test helpers for training: a small cache of PLUTO-shaped samples with a split, and a light
stand-in network with the model API (used where a test exercises the training machinery, not the
network: DDP sharding, resume, the NaN guard, tracking; the real network is tested elsewhere).

``make_train_data(root, logs, per_log)`` builds ``root/cache`` from ``cache_fakes.FakeSource``
(whose manifest also records the default feature params, as the real builder does) and
``root/splits.json`` (first log val, second test, the rest train). Every sample carries PLUTO's
causal keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pluto_dvc.model import ModelConfig, PlutoBatch, PlutoOutput
from pluto_dvc.params import FeatureParams, WorkerParams
from pluto_dvc.testing.cache_fakes import FakeSource, fake_sample, make_selection


class TrainSource(FakeSource):
    def describe(self) -> dict:
        return {**super().describe(), "features": FeatureParams().model_dump(mode="json")}

    def open_log(self, log_path: str, log_name: str):
        log = super().open_log(log_path, log_name)
        build = log.build

        def with_causal(frame_index: int) -> dict:
            return add_causal(build(frame_index))

        log.build = with_causal
        return log


def add_causal(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PLUTO's causal keys (features/records.py CausalInfo) on a fake sample: agent 1 leads,
    agents 1-2 interact, map polygon 0 is a red light the ego cares about, waiting when the agent
    count is odd; the free path runs straight ahead."""
    a = s["agent.category"].shape[0]
    m = s["map.polygon_type"].shape[0]
    f = s["agent.target"].shape[1]
    lead = np.zeros(a, bool)
    lead[1] = True
    inter = np.zeros(a, np.int16)
    inter[1:3] = (5, -3)
    care = np.zeros(m, bool)
    care[0] = True
    s["causal.leading_agent_mask"] = lead
    s["causal.leading_distance"] = np.where(lead, 12.0, 0.0).astype(np.float32)
    s["causal.is_waiting_for_red_light_without_lead"] = np.array(bool(a % 2))
    s["causal.ego_care_red_light_mask"] = care
    s["causal.fixed_ego_future_valid_mask"] = np.ones(f, bool)
    s["causal.free_path_points"] = np.stack(
        [np.arange(60.0), np.zeros(60), np.zeros(60)], -1
    ).astype(np.float32)
    s["causal.free_path_valid_mask"] = np.ones(60, bool)
    s["causal.interaction_label"] = inter
    return s


def make_train_data(root: Path, logs: int = 4, per_log: int = 8) -> tuple[Path, Path]:
    from pluto_dvc.cache import build_cache

    selection = make_selection(logs, per_log)
    cache = root / "cache"
    build_cache(
        selection,
        cache,
        TrainSource(),
        samples_per_shard=16,
        max_failure_ratio=0.2,
        worker=WorkerParams(kind="sequential"),
    )
    names = sorted(selection["log_name"].unique())
    splits = {"val": names[:1], "test": names[1:2], "train": names[2:]}
    path = root / "splits.json"
    path.write_text(json.dumps(splits))
    return cache, path


def flat_batch(n: int = 4) -> dict[str, torch.Tensor]:
    from pluto_dvc.features.collate import collate

    samples = [add_causal(fake_sample("log", f"{i:016x}")) for i in range(n)]
    return {k: torch.from_numpy(v) for k, v in collate(samples).items()}


class TinyPlanner(nn.Module):
    """Stand-in with the PlutoModel interface: an MLP of the ego state and each line's points."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d, f, m = 32, config.future_steps, config.num_modes
        self.state = nn.Linear(7, d)
        self.line = nn.Linear(8, d)
        self.mode = nn.Embedding(m, d)
        self.traj = nn.Linear(d, f * 6)
        self.score = nn.Linear(d, 1)
        self.agent = nn.Linear(4, f * 6)
        self.free = nn.Linear(d, f * 4) if config.ref_free_head else None
        self.hidden = nn.Linear(d, 16) if config.hidden_proj else None

    def forward(self, batch: PlutoBatch) -> PlutoOutput:
        b = batch.batch_size
        f, m = self.config.future_steps, self.config.num_modes
        ego = torch.relu(self.state(batch.current_state))  # (B, d)
        pts = batch.reference_line.position[:, :, ::30].flatten(2)  # (B, R, 8)
        q = ego[:, None, None] + self.line(pts / 50)[:, :, None] + self.mode.weight[None, None]
        q = torch.tanh(q)
        a = batch.agent
        present = torch.cat([a.position[:, 1:, 20], a.velocity[:, 1:, 20]], -1) / 20
        return PlutoOutput(
            trajectory=self.traj(q).view(b, q.shape[1], m, f, 6),
            probability=self.score(q)[..., 0],
            prediction=self.agent(present).view(b, -1, f, 6),
            ref_free_trajectory=None if self.free is None else self.free(ego).view(b, f, 4),
            hidden=None if self.hidden is None else self.hidden(ego),
        )


def use_tiny_planner(monkeypatch) -> None:
    import pluto_dvc.model as model_pkg

    monkeypatch.setattr(model_pkg, "PlutoModel", TinyPlanner, raising=False)


def save_tiny(model: nn.Module, directory: Path) -> None:
    """save_model stand-in for TinyPlanner (safetensors + config)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    save_file(model.state_dict(), str(directory / "model.safetensors"))
    (directory / "model_config.json").write_text(json.dumps(model.config.to_dict()))


def main() -> None:
    """``python train_fakes.py ROOT TRAIN_JSON``: train TinyPlanner on ROOT/cache + splits.json
    (cwd = ROOT). Env: RECORD_DIR -> each rank appends the origins of its training samples to
    RECORD_DIR/rank<r>-epoch<e>.txt; KILL_AT_EPOCH=e -> SIGKILL at the first batch of epoch e."""
    import os
    import signal
    import sys

    import pluto_dvc.model as model_pkg
    from pluto_dvc.params import parse_params
    from pluto_dvc.training.module import PlutoTrainingModule
    from pluto_dvc.training.run import TrainPaths, run_training

    model_pkg.PlutoModel = TinyPlanner
    model_pkg.save_model = save_tiny
    record = os.environ.get("RECORD_DIR")
    kill_at = int(os.environ.get("KILL_AT_EPOCH", "-1"))
    step = PlutoTrainingModule.training_step

    def training_step(self, batch, batch_idx):
        if self.current_epoch == kill_at and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        if record:
            path = Path(record) / f"rank{self.global_rank}-epoch{self.current_epoch}.txt"
            with path.open("a") as fh:
                for x, y in batch.origin.tolist():
                    fh.write(f"{x!r} {y!r}\n")
        return step(self, batch, batch_idx)

    PlutoTrainingModule.training_step = training_step
    root = Path(sys.argv[1])
    params = parse_params({"train": json.loads(sys.argv[2])})
    result = run_training(
        params, TrainPaths(cache_dir=root / "cache", splits_path=root / "splits.json"), False
    )
    if result:  # the summary plus the MLflow run (which models/ does not name)
        run = {
            "mlflow_run_id": result.mlflow_run_id,
            "mlflow_tracking_uri": result.mlflow_tracking_uri,
        }
        (root / "summary.json").write_text(json.dumps({**result.summary, **run}))


if __name__ == "__main__":
    main()
