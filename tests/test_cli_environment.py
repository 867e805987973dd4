"""What the user sees when the machine, not the data, fails; and the small promises of the CLI.

A read-only folder, a full disk or a worker killed by the OS end in one line (what, which path, what
to do), a non-zero exit and the earlier outputs intact. `inspect --failures | head` does not raise;
a missing `--params` file is an error; files follow the umask; an interrupted `synthesize` leaves
no staging folder; a stage that fails on its params says that `dvc checkout` restores outputs.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cache_fakes import FakeSource, make_selection
from synthetic_factory import tiny_synthetic_params

from pluto_dvc.cache import CacheDataset, build_cache, run_build_cache
from pluto_dvc.cache.inspect import verify_cache
from pluto_dvc.cache.manifest import FAILURES, FAILURES_SCHEMA, MANIFEST
from pluto_dvc.cli import main, run_guarded
from pluto_dvc.params import WorkerParams, parse_params
from pluto_dvc.selection.output import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SEQ = WorkerParams(kind="sequential")


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _one_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)


@pytest.fixture()
def built(tmp_path: Path):
    """A finished cache plus its selection (scenarios.parquet) and the params of the stage."""
    selection = make_selection(3, 4)
    scenarios = tmp_path / "scenarios.parquet"
    pq.write_table(pa.Table.from_pandas(selection, schema=SCHEMA, preserve_index=False), scenarios)
    cache = tmp_path / "cache"
    build_cache(
        selection,
        cache,
        FakeSource(cost_maps=False),
        samples_per_shard=4,
        max_failure_ratio=0.0,
        worker=SEQ,
    )
    return cache, scenarios, _files(cache)


def _rebuild(cache: Path, scenarios: Path, source: FakeSource, worker: dict) -> int:
    params = parse_params({"features": {"samples_per_shard": 4}, "worker": worker})
    return run_guarded(lambda: run_build_cache(params, scenarios, cache, None, source=source) and 0)


# ------------------------------------------------------------ 5. environment failures, one line


def test_a_full_disk_is_one_line_and_keeps_the_cache(built, monkeypatch, capsys):
    cache, scenarios, before = built
    from pluto_dvc.cache import shard

    real_open = open

    class FullDisk:  # a new file whose writes fail as on a full disk (no file name, as CPython)
        def __new__(cls, path, mode="r", *args, **kwargs):
            if "w" not in mode:
                return real_open(path, mode, *args, **kwargs)
            return super().__new__(cls)

        def __init__(self, path, mode="r", *args, **kwargs):
            self.closed = False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            self.closed = True

    monkeypatch.setattr(shard, "open", FullDisk, raising=False)
    changed = FakeSource(
        cost_maps=False, changed_logs=frozenset({"2021.07.10.20.45.29_veh-35_01095_01486"})
    )
    assert _rebuild(cache, scenarios, changed, {"kind": "sequential"}) != 0
    _one_line(capsys.readouterr().err, "disk is full", str(cache / "shards"))
    assert _files(cache) == before  # no temporaries, the committed cache untouched
    verify_cache(cache)


def test_a_read_only_output_folder_is_one_line(built, monkeypatch, capsys):
    cache, scenarios, before = built
    import tempfile

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / "x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert _rebuild(cache, scenarios, FakeSource(cost_maps=False), {"kind": "sequential"}) != 0
    _one_line(capsys.readouterr().err, "Read-only file system", str(cache), "writable")
    assert _files(cache) == before


def test_a_worker_killed_by_the_os_is_one_line_and_keeps_the_cache(built, capsys):
    cache, scenarios, before = built
    victim, other = (
        "2021.07.11.20.45.29_veh-35_01095_01486",
        "2021.07.12.20.45.29_veh-35_01095_01486",
    )
    # two shards to rebuild (a pool of two processes); the OS kills the one opening `victim`
    source = FakeSource(
        cost_maps=False, changed_logs=frozenset({victim, other}), kill_logs=frozenset({victim})
    )
    assert _rebuild(cache, scenarios, source, {"kind": "processes", "num_workers": 2}) != 0
    _one_line(capsys.readouterr().err, "worker process", "num_workers", "memory")
    assert len(CacheDataset(cache)) == 12
    verify_cache(cache)
    assert {k: v for k, v in _files(cache).items() if k.startswith(MANIFEST)} == {
        MANIFEST: before[MANIFEST]
    }


# ------------------------------------------------------------- 6. `inspect --failures | head`


def test_inspect_failures_into_a_closed_pipe_does_not_raise(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    rows = [
        {"log_name": f"log{i}", "token": f"{i:016x}", "scenario_type": "t", "map_name": "m"}
        | {"kind": "error", "reason": f"reason {i} " + "y" * 80}
        for i in range(5000)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=FAILURES_SCHEMA), cache / FAILURES)
    cmd = [sys.executable, "-m", "pluto_dvc.cli", "cache", "inspect", "--failures"]
    cmd += ["--limit", "5000", "--cache-dir", str(cache)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
    )
    assert proc.stdout.readline().startswith("5000 failed scenarios")
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception" not in err, err


# ------------------------------------------------------------------------- 7. smaller ones


def test_a_missing_params_file_is_an_error(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "does_not_exist.yaml"
    assert main(["params", "--params", str(missing)]) == 2
    _one_line(capsys.readouterr().err, str(missing), "does not exist")
    assert main(["params"]) == 0  # no params.yaml at all: the defaults, as before


def test_a_stage_failing_on_its_params_says_dvc_checkout_restores_outputs(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text("split:\n  no_such_key: 1\n")
    for params in (bad, tmp_path / "missing.yaml"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "stages" / "split.py"), "--params", str(params)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(),
        )
        assert proc.returncode == 2, proc.stderr
        first = proc.stderr.splitlines()[0]
        assert first.startswith("error: ") and str(params) in first, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "`dvc checkout` restores" in proc.stderr


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_output_files_follow_the_umask(tmp_path: Path, umask: int):
    from log_factory import write_log

    from pluto_dvc.cache.manifest import write_parquet
    from pluto_dvc.selection.output import write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        write_parquet(tmp_path / "manifest.parquet", pa.table({"a": [1]}))
        db = write_log(tmp_path)
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in (tmp_path / "summary.json", tmp_path / "manifest.parquet", db):
        assert path.stat().st_mode & 0o777 == expected, path


def test_an_interrupted_synthesize_leaves_no_staging_folder(tmp_path: Path, monkeypatch):
    from pluto_dvc.synthetic import dataset

    out = tmp_path / "nuplan"
    params = tiny_synthetic_params(out, num_logs=2, minutes_per_log=0.3)
    real, calls = dataset.synthesize_log, []

    def interrupted(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(dataset, "synthesize_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset.synthesize_dataset(params, SEQ)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(dataset, "synthesize_log", real)
    dataset.synthesize_dataset(params, SEQ)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nuplan"]


def test_a_stale_staging_folder_of_a_killed_run_is_removed(tmp_path: Path):
    from pluto_dvc.synthetic.dataset import synthesize_dataset

    out = tmp_path / "nuplan"
    stale = tmp_path / ".nuplan.partial" / "nuplan-v1.1"
    stale.mkdir(parents=True)
    (stale / "half.db").write_bytes(b"x")
    shutil.copytree(tmp_path / ".nuplan.partial", tmp_path / ".nuplan.old")
    synthesize_dataset(tiny_synthetic_params(out, num_logs=1, minutes_per_log=0.3), SEQ)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nuplan"]
