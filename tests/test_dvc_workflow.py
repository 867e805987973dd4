"""The DVC workflow as a user lives it, with real DVC in throw-away repositories (slow).

One tiny pipeline is reproduced from scratch once per module; each test works on its own copy.
Timings and disk figures are printed (run with ``-s``) as JSON lines starting with ``measure``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml
from dvc_repo import TINY_PIPELINE, DvcRepo

from pluto_dvc.cache import CacheDataset
from pluto_dvc.params import TrainParams

pytestmark = pytest.mark.slow

STAGES = (
    "synthesize",
    "select_scenarios",
    "split",
    "feature_probe",
    "build_cache",
    "train",
    "evaluate",
)


def _measure(name: str, **values) -> None:
    print("measure", json.dumps({"name": name, **values}))


def _ran(output: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` executed (not skipped, not restored)."""
    return {s for s in STAGES if f"Running stage '{s}'" in output}


def _restored(output: str) -> set[str]:
    return {s for s in STAGES if f"Stage '{s}' is cached - skipping run" in output}


def _cache_hash(lock_text: str) -> str:
    """The md5 of data/cache that a dvc.lock records (build_cache's output)."""
    outs = yaml.safe_load(lock_text)["stages"]["build_cache"]["outs"]
    return next(o["md5"] for o in outs if o["path"] == "data/cache")


def _objects(repo: DvcRepo) -> dict[str, int]:
    """DVC cache objects (md5 -> bytes) of the repository."""
    root = repo.root / ".dvc" / "cache" / "files" / "md5"
    return {
        p.parent.name + p.name: p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".dir")
    }


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> DvcRepo:
    """The tiny pipeline reproduced from scratch and committed (dvc.lock in git)."""
    repo = DvcRepo(tmp_path_factory.mktemp("base") / "repo", params=TINY_PIPELINE)
    start = time.perf_counter()
    out = repo.repro().stdout
    _measure("cold_repro_tiny", seconds=round(time.perf_counter() - start, 1))
    assert _ran(out) == set(STAGES), out
    repo.commit("pipeline outputs")
    return repo


@pytest.fixture
def repo(pipeline: DvcRepo, tmp_path: Path) -> DvcRepo:
    return DvcRepo.copy_of(pipeline, tmp_path / "repo")


def test_noop_repro_runs_nothing_quickly(repo: DvcRepo):
    start = time.perf_counter()
    out = repo.repro().stdout
    seconds = time.perf_counter() - start
    _measure("noop_repro", seconds=round(seconds, 2))
    assert _ran(out) == set() and "Data and pipelines are up to date" in out, out
    assert seconds < 3.0


def test_lr_reruns_train_and_evaluate_only_and_radius_reruns_from_build_cache(repo: DvcRepo):
    repo.update_params({"train": {"lr": 0.0005}})
    out = repo.repro().stdout
    assert _ran(out) == {"train", "evaluate"}, out

    repo.update_params({"features": {"radius_m": 100.0}})
    out = repo.repro().stdout
    assert _ran(out) == {"feature_probe", "build_cache", "train", "evaluate"}, out

    # back to the committed radius: build_cache is persistent (no run-cache), it rebuilds the
    # same bytes; the later stages come back from DVC's run-cache without running
    repo.update_params({"features": {"radius_m": 120.0}})  # params.yaml's value
    out = repo.repro().stdout
    assert "build_cache" in _ran(out), out
    assert {"train", "evaluate"} <= _restored(out), out


def test_feature_edits_rebuild_the_cache_only_when_outputs_change(repo: DvcRepo):
    builder = repo.root / "src" / "pluto_dvc" / "features" / "builder.py"
    text = builder.read_text()
    builder.write_text(text.replace('"""', '"""A comment-only edit. ', 1))
    out = repo.repro("build_cache").stdout
    assert _ran(out) == {"feature_probe"}, out
    assert "Stage 'build_cache' didn't change" in out, out

    old = "return self.build_features(frame_index).to_flat()"
    assert old in text
    changed = (
        "return {k: v * 2 if v.dtype == np.float32 else v "
        "for k, v in self.build_features(frame_index).to_flat().items()}"
    )
    builder.write_text(text.replace(old, changed))
    before = CacheDataset(repo.root / "data" / "cache").meta
    out = repo.repro("build_cache").stdout
    assert _ran(out) == {"feature_probe", "build_cache"}, out
    after = CacheDataset(repo.root / "data" / "cache").meta
    assert after["fingerprint"] != before["fingerprint"]
    assert "reused 0 samples" in out, out  # a cache of other features is never mixed in


def test_experiments_run_show_and_a_queued_sweep_shares_the_cache(repo: DvcRepo):
    out = repo.run("dvc", "exp", "run", "-n", "lr-high", "-S", "train.lr=0.002").stdout
    assert _ran(out) == {"train", "evaluate"}, out
    shown = json.loads(repo.run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "lr-high" in text and "0.002" in text and "dvclive/metrics.json" in text

    objects_before = _objects(repo)
    # lrs other than the workspace's (else DVC's run-cache restores the stage: no new run)
    sweep = (("sweep-a", "0.0003"), ("sweep-b", "0.0005"))
    assert all(float(lr) != TrainParams().lr for _, lr in sweep)
    for name, lr in sweep:
        repo.run("dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}")
    start = time.perf_counter()
    repo.run("dvc", "queue", "start", "-j", "1")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = repo.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    seconds = time.perf_counter() - start
    assert "Success" in status and "Failed" not in status, status
    for name in ("sweep-a", "sweep-b"):
        log = repo.run("dvc", "queue", "logs", name).stdout
        assert "Running stage 'build_cache'" not in log, log  # the cache is not rebuilt
    added = {k: v for k, v in _objects(repo).items() if k not in objects_before}
    # every experiment's commit records the very cache of the workspace (same hash: nothing new)
    refs = repo.run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    cache_hashes = {_cache_hash(repo.run("git", "show", f"{ref}:dvc.lock").stdout) for ref in refs}
    assert len(refs) >= 3 and cache_hashes == {_cache_hash((repo.root / "dvc.lock").read_text())}
    _measure(
        "queued_sweep",
        experiments=2,
        seconds_per_experiment=round(seconds / 2, 1),
        dvc_cache_bytes_per_experiment=sum(added.values()) // 2,
        feature_cache_bytes=_disk(repo.root / "data" / "cache"),
    )
    assert added  # the experiments' models and reports

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / 'mlflow.db'}")
    names = {
        r.info.run_name
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
    }
    assert {"lr-high", "sweep-a", "sweep-b"} <= names, names


def _round_trip(repo: DvcRepo, tmp_path: Path, remote: str, url: str, **config: str) -> None:
    repo.run("dvc", "remote", "add", "-d", remote, url)
    for key, value in config.items():
        repo.run("dvc", "remote", "modify", remote, key, value)
    repo.commit(f"remote {remote}")
    start = time.perf_counter()
    repo.run("dvc", "push")
    pushed = time.perf_counter() - start
    clone = DvcRepo.clone_of(repo, tmp_path / f"clone-{remote}")
    start = time.perf_counter()
    clone.run("dvc", "pull")
    pulled = time.perf_counter() - start
    _measure(f"push_pull_{remote}", push_seconds=round(pushed, 1), pull_seconds=round(pulled, 1))
    for rel in (
        "data/cache/manifest.parquet",
        "models/model.safetensors",
        "data/feature_probe.json",
    ):
        assert (clone.root / rel).read_bytes() == (repo.root / rel).read_bytes(), rel
    status = clone.run("dvc", "status").stdout
    assert "up to date" in status, status


def test_push_then_pull_into_a_fresh_clone_through_a_local_remote(repo: DvcRepo, tmp_path: Path):
    _round_trip(repo, tmp_path, "local", str(tmp_path / "remote"))


def test_push_then_pull_through_an_s3_endpoint_on_loopback(
    repo: DvcRepo, tmp_path: Path, monkeypatch
):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        creds = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for key, value in creds.items():
            monkeypatch.setenv(key, value)
        repo.env.update(creds)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pluto-dvc")
        _round_trip(repo, tmp_path, "s3", "s3://pluto-dvc/store", endpointurl=endpoint)
    finally:
        server.stop()
