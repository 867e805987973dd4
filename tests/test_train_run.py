"""Training runs end to end (with a light stand-in network): DDP sharding, kill -9 and resume,
determinism, the NaN guard, MLflow and dvclive outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from train_fakes import TinyPlanner, make_train_data, save_tiny, use_tiny_planner

from pluto_dvc.cache import CacheDataset
from pluto_dvc.params import parse_params
from pluto_dvc.splitting import read_splits
from pluto_dvc.training.data import PlutoDataModule, ShardedBatchSampler
from pluto_dvc.training.module import NonFiniteLossError
from pluto_dvc.training.run import TrainPaths, run_training

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
SMALL = {"epochs": 3, "warmup_epochs": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    make_train_data(root, logs=4, per_log=10)  # 20 train, 10 val samples
    return root


def _repo(tmp_path: Path, data: Path) -> Path:
    """A git repo (one commit: dvclive wants a HEAD) holding links to the data."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    (repo / "cache").symlink_to(data / "cache")
    (repo / "splits.json").symlink_to(data / "splits.json")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "README").write_text("x\n")
    subprocess.run(["git", "add", "README"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def _train(repo: Path, train: dict, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}", "DVC_NO_ANALYTICS": "1", **env}
    full.pop("DVC_ROOT", None)
    full.pop("DVC_EXP_NAME", None)
    return subprocess.run(
        [sys.executable, str(TESTS / "train_fakes.py"), str(repo), json.dumps(train)],
        cwd=repo,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _origins(record: Path, epoch: int) -> dict[int, list[str]]:
    out = {}
    for path in sorted(record.glob(f"rank*-epoch{epoch}.txt")):
        out[int(path.name[4])] = path.read_text().splitlines()
    return out


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# -------------------------------------------------------------------------------- sampler


@pytest.mark.parametrize(
    "n, batch, world", [(20, 4, 2), (21, 4, 2), (9, 4, 3), (16, 4, 2), (5, 8, 2)]
)
def test_sharded_batch_sampler_covers_every_sample_once_with_equal_batch_counts(n, batch, world):
    for epoch in (0, 1):
        seen: list[int] = []
        counts = set()
        for rank in range(world):
            s = ShardedBatchSampler(n, batch, shuffle=True, seed=3, rank=rank, world_size=world)
            s.set_epoch(epoch)
            batches = list(s)
            assert all(batches) and len(batches) == len(s)
            assert max(len(b) for b in batches) <= batch + 1
            counts.add(len(batches))
            seen += [i for b in batches for i in b]
        assert sorted(seen) == list(range(n))
        assert len(counts) == 1  # no rank waits for another at a collective


def test_sharded_batch_sampler_order_depends_on_seed_and_epoch_only():
    a = ShardedBatchSampler(30, 4, True, seed=1)
    b = ShardedBatchSampler(30, 4, True, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_data_module_parts_follow_the_split_logs(data):
    dm = PlutoDataModule(data / "cache", data / "splits.json", batch_size=4)
    dm.setup()
    splits = read_splits(data / "splits.json")
    for part in ("train", "val", "test"):
        logs = set(dm.parts[part].table.column("log_name").to_pylist())
        assert logs == set(splits[part])
    batch = next(iter(dm.train_dataloader()))
    assert batch.batch_size == 4 and batch.agent.position.shape[-1] == 2


# ------------------------------------------------------------------------------- full runs


def test_ddp_two_processes_see_every_training_sample_once_per_epoch(tmp_path, data):
    repo = _repo(tmp_path, data)
    record = tmp_path / "record"
    record.mkdir()
    train = {**SMALL, "epochs": 2, "strategy": "ddp", "devices": 2}
    done = _train(repo, train, RECORD_DIR=str(record))
    assert done.returncode == 0, done.stderr[-3000:]
    expected = Counter(
        f"{x!r} {y!r}"
        for x, y in CacheDataset(data / "cache", read_splits(data / "splits.json")["train"])
        .batch(range(20))["origin"]
        .tolist()
    )
    for epoch in (0, 1):
        by_rank = _origins(record, epoch)
        assert set(by_rank) == {0, 1}
        assert all(by_rank.values())
        assert Counter(line for lines in by_rank.values() for line in lines) == expected
    summary = json.loads((repo / "summary.json").read_text())
    assert summary["epochs"] == 2 and (repo / "models" / "model.safetensors").is_file()


def test_kill_9_then_rerun_resumes_from_the_last_epoch_with_the_same_result(tmp_path, data):
    train = {**SMALL, "epochs": 4}
    ref_repo = _repo(tmp_path / "ref", data)
    done = _train(ref_repo, train)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads((ref_repo / "summary.json").read_text())

    repo = _repo(tmp_path / "killed", data)
    killed = _train(repo, train, KILL_AT_EPOCH="2")
    assert killed.returncode == -9
    resume_dirs = list((repo / ".train-resume").iterdir())
    assert len(resume_dirs) == 1 and (resume_dirs[0] / "checkpoints" / "last.ckpt").is_file()
    assert not (repo / "models").exists()

    record = tmp_path / "record"
    record.mkdir()
    resumed = _train(repo, train, RECORD_DIR=str(record))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained_epochs = sorted(int(p.stem.split("epoch")[1]) for p in record.glob("rank0-*.txt"))
    assert trained_epochs == [2, 3]  # epochs 0 and 1 were not trained again
    summary = json.loads((repo / "summary.json").read_text())
    assert summary["val"] == reference["val"]  # same params + data: same final metrics
    assert _file_hashes(repo / "models") == _file_hashes(ref_repo / "models")
    assert summary["mlflow_run_id"] != reference["mlflow_run_id"]
    assert not (repo / ".train-resume").exists() or not any((repo / ".train-resume").iterdir())
    # the resumed run continued the same MLflow run: the killed part's epochs are in it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["mlflow_tracking_uri"])
    history = client.get_metric_history(summary["mlflow_run_id"], "val/loss")
    assert len(history) >= 4


@pytest.mark.slow  # two training processes, ~45 s on 2 shared cores; the kill -9 test checks
# the same across a resume in the fast suite
def test_same_params_and_data_give_byte_identical_models_in_different_folders(tmp_path, data):
    """Two runs in two repos (other output, working and resume folders, other MLflow stores and
    runs): every file of ``models/`` is the same, so DVC hashes the output identically."""
    hashes = []
    for name in ("one", "other-clone"):
        repo = _repo(tmp_path / name, data)
        done = _train(repo, SMALL)
        assert done.returncode == 0, done.stderr[-3000:]
        hashes.append(_file_hashes(repo / "models"))
    assert "model.safetensors" in hashes[0] and "checkpoints/last.ckpt" in hashes[0]
    differing = sorted(
        k for k in hashes[0].keys() | hashes[1].keys() if hashes[0].get(k) != hashes[1].get(k)
    )
    assert differing == []


def test_outputs_mlflow_run_and_dvclive_metrics(tmp_path, data, monkeypatch):
    repo = _repo(tmp_path, data)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "my-exp")
    use_tiny_planner(monkeypatch)
    import pluto_dvc.model as model_pkg

    monkeypatch.setattr(model_pkg, "save_model", save_tiny, raising=False)
    result = run_training(
        parse_params({"train": {**SMALL, "lr": 0.002}}),
        TrainPaths(Path("cache"), Path("splits.json")),
        False,
    )
    summary = result.summary
    models = repo / "models"
    assert (models / "model.safetensors").is_file() and (models / "model_config.json").is_file()
    ckpts = sorted(p.name for p in (models / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and sum(n.startswith("best-") for n in ckpts) == 3
    # the exported checkpoints name each other relative to models/, not the resume folder
    last = torch.load(models / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["dirpath"] == "checkpoints" and state["last_model_path"] == "checkpoints/last.ckpt"
    assert {Path(k).parent.name for k in state["best_k_models"]} == {"checkpoints"}
    assert {Path(k).name for k in state["best_k_models"]} == set(ckpts) - {"last.ckpt"}
    on_disk = json.loads((models / "train_summary.json").read_text())
    assert on_disk == summary
    assert state["best_model_path"] == f"checkpoints/{summary['best_checkpoint']}"
    assert not {"mlflow_run_id", "mlflow_tracking_uri"} & set(
        summary
    )  # run-specific: not in models/
    assert result.mlflow_tracking_uri == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    for key in ("min_ade", "top1_ade", "top1_fde", "cv_ade", "loss", "miss_rate"):
        assert key in summary["val"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.mlflow_tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    weights_sha = hashlib.sha256((models / "model.safetensors").read_bytes()).hexdigest()
    assert run.data.tags["pluto_dvc.model_sha256"] == weights_sha  # how evaluate finds the run
    assert run.info.run_name == "my-exp"
    assert run.data.tags["git_revision"].startswith(
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    )
    assert run.data.params["train.lr"] == "0.002"
    assert len(client.get_metric_history(run.info.run_id, "val/min_ade")) >= 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {"model/model.safetensors", "model/model_config.json"}
    assert (repo / "mlartifacts").is_dir()
    live = json.loads((repo / "dvclive" / "metrics.json").read_text())
    assert (
        "min_ade" in live["val"]
        and (repo / "dvclive" / "plots" / "metrics" / "val" / "loss.tsv").is_file()
    )


def test_infinite_loss_stops_training_naming_the_step_and_the_term(tmp_path, data, monkeypatch):
    repo = _repo(tmp_path, data)
    monkeypatch.chdir(repo)
    forward = TinyPlanner.forward
    calls = {"n": 0}

    def exploding(self, batch):
        out = forward(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                out.prediction = out.prediction + float("inf")
        return out

    monkeypatch.setattr(TinyPlanner, "forward", exploding)
    use_tiny_planner(monkeypatch)
    with pytest.raises(NonFiniteLossError, match=r"global step 2 .*prediction=(nan|inf)"):
        run_training(
            parse_params({"train": SMALL}), TrainPaths(Path("cache"), Path("splits.json")), False
        )
    assert not (repo / "models").exists()


def test_read_splits_refuses_missing_broken_or_overlapping_files(tmp_path):
    from pluto_dvc.errors import DataError

    path = tmp_path / "splits.json"
    with pytest.raises(DataError, match="does not exist.*split stage"):
        read_splits(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_splits(path)
    path.write_text(json.dumps({"train": ["a"], "val": ["b"]}))
    with pytest.raises(DataError, match="'test' must be a list"):
        read_splits(path)
    path.write_text(json.dumps({"train": ["a", "b"], "val": ["b"], "test": ["c"]}))
    with pytest.raises(DataError, match="log b is in both 'train' and 'val'"):
        read_splits(path)
    path.write_text(json.dumps({"train": ["a"], "val": ["b"], "test": ["c"]}))
    assert read_splits(path) == {"train": ["a"], "val": ["b"], "test": ["c"]}


def test_train_params_refuse_inconsistent_schedules():
    from pluto_dvc.errors import ParamsError

    with pytest.raises(ParamsError, match="warmup_epochs"):
        parse_params({"train": {"epochs": 3, "warmup_epochs": 3}})
    with pytest.raises(ParamsError, match="min_lr"):
        parse_params({"train": {"lr": 1e-4, "min_lr": 1e-3}})
    with pytest.raises(ParamsError, match="unknown key 'train.epoch'"):
        parse_params({"train": {"epoch": 3}})


def test_contrastive_without_hidden_projection_is_refused_before_training(
    tmp_path, data, monkeypatch
):
    from pluto_dvc.errors import ParamsError

    monkeypatch.chdir(tmp_path)
    params = parse_params({"train": {**SMALL, "contrastive": True}})
    with pytest.raises(ParamsError, match="hidden_proj"):
        run_training(params, TrainPaths(data / "cache", data / "splits.json"), False)
    assert not (tmp_path / "models").exists()
