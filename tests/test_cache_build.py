"""Building the cache: determinism across workers, failures, incremental growth, kill and resume."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pluto_dvc.cache import CacheBuildError, CacheDataset, build_cache, read_failures
from pluto_dvc.cache.inspect import verify_cache
from pluto_dvc.cache.plan import plan_shards, sort_selection
from pluto_dvc.cache.shard import is_shard_name, read_footer
from pluto_dvc.errors import DataError
from pluto_dvc.params import WorkerParams
from pluto_dvc.testing.cache_fakes import FakeSource, make_selection, read_counter

TESTS = Path(__file__).resolve().parent
SEQ = WorkerParams(kind="sequential")


def _build(selection, cache, source=None, *, per_shard=8, ratio=0.2, worker=SEQ):
    return build_cache(
        selection,
        cache,
        source or FakeSource(),
        samples_per_shard=per_shard,
        max_failure_ratio=ratio,
        worker=worker,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _finished(shards_dir: Path) -> list[Path]:
    return sorted(p for p in shards_dir.iterdir() if is_shard_name(p.name))


def _tokens_in(shards: list[Path]) -> set[str]:
    out = set()
    for path in shards:
        footer = read_footer(path)
        out |= set(footer["samples"]["token"]) | set(footer["failures"]["token"])
    return out


# ---------------------------------------------------------------------------------------------
# layout


def test_plan_packs_whole_logs_splits_big_ones_and_never_mixes_maps():
    rows = []
    for log, n, map_name in [("a", 3, "m1"), ("b", 4, "m1"), ("c", 2, "m1"), ("d", 19, "m1")]:
        rows += [(log, f"{i:016x}", "t", 0, map_name, f"{log}.db") for i in range(n)]
    rows += [("e", f"{i:016x}", "t", 0, "m2", "e.db") for i in range(2)]
    table = sort_selection(pd.DataFrame(rows, columns=make_selection(1, 1).columns))
    ranges = plan_shards(table, 8, min_shards=1)
    assert ranges == [(0, 7), (7, 9), (9, 15), (15, 21), (21, 28), (28, 30)]
    assert all(b - a <= 8 for a, b in ranges)
    for a, b in ranges:
        assert table.map_name.iloc[a:b].nunique() == 1
    # a pure function of the rows: input order does not matter
    shuffled = table.sample(frac=1.0, random_state=3)
    assert plan_shards(sort_selection(shuffled), 8, min_shards=1) == ranges
    # a small selection: whole logs are not packed, so every worker gets a shard
    assert plan_shards(table, 8) == [(0, 3), (3, 7), (7, 9), (9, 15), (15, 21), (21, 28), (28, 30)]
    # a large one: shards of about samples_per_shard, whatever the log sizes
    big = sort_selection(make_selection(300, 7))
    sizes = [b - a for a, b in plan_shards(big, 64, min_shards=4)]
    assert max(sizes) <= 64 and min(sizes[:-1]) > 64 - 7 and len(sizes) == 34


def test_selection_errors_are_clear(tmp_path: Path):
    sel = make_selection(1, 3)
    with pytest.raises(DataError, match="selection is empty"):
        _build(sel.iloc[:0], tmp_path / "c")
    with pytest.raises(DataError, match=f"token {sel.token[0]} .* 2 times"):
        _build(pd.concat([sel, sel.iloc[:1]]), tmp_path / "c")
    with pytest.raises(DataError, match="lacks columns \\['log_path'\\]"):
        _build(sel.drop(columns="log_path"), tmp_path / "c")


# ---------------------------------------------------------------------------------------------
# determinism


def test_identical_bytes_for_sequential_processes_and_ray(tmp_path: Path, monkeypatch):
    # Ray workers import the fake by module name: give them the tests folder
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    sel = make_selection(4, 6, maps=("us-ma-boston", "sg-one-north"))
    source = FakeSource(
        invalid=frozenset(sel.token[[1, 9]]), crash=frozenset(sel.token[[14]]), cost_maps=False
    )
    workers = {
        "sequential": SEQ,
        "processes-2": WorkerParams(kind="processes", num_workers=2),
        "processes-3": WorkerParams(kind="processes", num_workers=3),
        "ray-2": WorkerParams(kind="ray", num_workers=2),
    }
    outputs = {}
    for name, worker in workers.items():
        report = _build(sel, tmp_path / name, source, per_shard=5, worker=worker)
        assert report.summary["num_failures"] == 3
        outputs[name] = _files(tmp_path / name)
    reference = outputs.pop("sequential")
    assert len([n for n in reference if n.startswith("shards/")]) >= 5
    for name, files in outputs.items():
        assert files == reference, name


# ---------------------------------------------------------------------------------------------
# failures


def test_failing_scenarios_are_isolated_and_reported(tmp_path: Path):
    sel = make_selection(5, 10)
    bad_log = sel.log_name.iloc[-1]
    source = FakeSource(
        invalid=frozenset(sel.token[[0, 11]]),
        crash=frozenset(sel.token[[2]]),
        missing=frozenset(sel.token[[3]]),
        bad_logs=frozenset({bad_log}),
    )
    report = _build(sel, tmp_path / "c", source, ratio=0.3)
    s = report.summary
    assert (s["num_scenarios"], s["num_samples"], s["num_failures"]) == (50, 36, 14)
    assert s["failures_by_kind"] == {"error": 2, "invalid": 2, "log": 10}
    failures = read_failures(tmp_path / "c").to_pandas().set_index("token")
    assert set(failures.index) == set(sel.token[[0, 2, 3, 11]]) | set(
        sel.token[sel.log_name == bad_log]
    )
    assert failures.loc[sel.token[0], "kind"] == "invalid"
    assert failures.loc[sel.token[0], "reason"].startswith("no reference line")
    assert "RuntimeError: simulated bug" in failures.loc[sel.token[2], "reason"]
    assert "cache_fakes.py" in failures.loc[sel.token[2], "reason"]  # where the bug is
    assert "not a frame of log" in failures.loc[sel.token[3], "reason"]
    bad = failures[failures.log_name == bad_log]
    assert (bad.kind == "log").all() and bad.reason.str.contains("not a SQLite database").all()
    assert (failures.map_name == "us-ma-boston").all()
    ds = CacheDataset(tmp_path / "c")
    assert len(ds) == 36 and not set(failures.index) & set(ds.table.column("token").to_pylist())


def test_failure_ratio_above_threshold_fails_with_a_clear_message(tmp_path: Path):
    sel = make_selection(2, 10)
    source = FakeSource(invalid=frozenset(sel.token[:3]))
    with pytest.raises(CacheBuildError) as info:
        _build(sel, tmp_path / "c", source, ratio=0.1)
    msg = str(info.value)
    assert "3 of 20 scenarios failed (15.0%), above cache.max_failure_ratio = 0.1" in msg
    assert "1 x no reference line for token" in msg  # the most common reasons
    assert "failures.parquet" in msg and "max_failure_ratio" in msg
    assert info.value.report.summary["num_failures"] == 3
    assert read_failures(tmp_path / "c").num_rows == 3  # everything written for inspection
    # at the threshold it passes, and nothing is recomputed: invalid samples are remembered
    counter = tmp_path / "count.txt"
    report = _build(
        sel, tmp_path / "c", FakeSource(invalid=source.invalid, counter=str(counter)), ratio=0.15
    )
    assert report.computed == 0 and read_counter(counter) == []


def test_errors_are_retried_invalid_samples_are_not(tmp_path: Path):
    sel = make_selection(3, 6)
    counter = tmp_path / "count.txt"
    kw = {"invalid": frozenset(sel.token[[0]]), "crash": frozenset(sel.token[[7]])}
    _build(sel, tmp_path / "c", FakeSource(**kw), ratio=0.5)
    # the bug is fixed: only the crashed scenario is built again (its shard-mates are copied)
    report = _build(sel, tmp_path / "c", FakeSource(invalid=kw["invalid"], counter=str(counter)))
    assert read_counter(counter) == [(sel.log_name[7], sel.token[7])]
    assert report.summary["failures_by_kind"] == {"invalid": 1}
    assert (report.shards_written, report.reused) == (1, 5)


# ---------------------------------------------------------------------------------------------
# incremental


def test_growing_the_selection_computes_only_new_scenarios(tmp_path: Path):
    full = make_selection(10, 50)
    small = full.sample(n=50, random_state=0)
    counter = tmp_path / "count.txt"
    source = FakeSource(counter=str(counter), cost_maps=False)
    first = _build(small, tmp_path / "c", source, per_shard=64)
    assert first.computed == 50
    second = _build(full, tmp_path / "c", source, per_shard=64)
    built = read_counter(counter)
    assert len(built) == 500 and len(set(built)) == 500  # each scenario built exactly once
    assert (second.computed, second.reused) == (450, 50)
    # the result is the cache a clean build of the full selection writes
    _build(full, tmp_path / "clean", FakeSource(cost_maps=False), per_shard=64)
    assert _files(tmp_path / "c") == _files(tmp_path / "clean")
    # unchanged: nothing to do; shrinking: nothing computed, shards reassembled from blobs
    again = _build(full, tmp_path / "c", source, per_shard=64)
    assert (again.computed, again.reused, again.shards_written) == (0, 0, 0)
    shrunk = _build(full.iloc[::2], tmp_path / "c", source, per_shard=64)
    assert shrunk.computed == 0 and len(read_counter(counter)) == 500
    assert len(CacheDataset(tmp_path / "c")) == 250


def test_feature_change_rebuilds_and_layout_change_does_not(tmp_path: Path):
    sel = make_selection(3, 6)
    counter = tmp_path / "count.txt"
    _build(sel, tmp_path / "c", FakeSource(counter=str(counter), cost_maps=False))
    old_shards = set(os.listdir(tmp_path / "c" / "shards"))
    # samples_per_shard is layout only: samples are copied, none recomputed
    report = _build(
        sel, tmp_path / "c", FakeSource(counter=str(counter), cost_maps=False), per_shard=4
    )
    assert report.computed == 0 and report.reused == 18 and not report.rebuilt_all
    # another feature version (params or code): every sample again, old shards gone
    report = _build(
        sel, tmp_path / "c", FakeSource(version="fake-2", counter=str(counter), cost_maps=False)
    )
    assert report.rebuilt_all and report.computed == 18 and len(read_counter(counter)) == 36
    assert not old_shards & set(os.listdir(tmp_path / "c" / "shards"))
    verify_cache(tmp_path / "c")


def test_a_changed_log_file_is_built_again(tmp_path: Path):
    sel = make_selection(3, 6)
    counter = tmp_path / "count.txt"
    _build(sel, tmp_path / "c", FakeSource(cost_maps=False))
    changed = sel.log_name[8]
    source = FakeSource(counter=str(counter), cost_maps=False, changed_logs=frozenset({changed}))
    report = _build(sel, tmp_path / "c", source)
    assert {log for log, _ in read_counter(counter)} == {changed} and report.computed == 6


def test_a_second_build_on_the_same_cache_is_refused(tmp_path: Path):
    cache = tmp_path / "c"
    with open(tmp_path / ".c.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CacheBuildError, match="another build is writing"):
            _build(make_selection(1, 2), cache)


# ---------------------------------------------------------------------------------------------
# kill -9 and resume

_RUNNER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from pluto_dvc.testing.cache_fakes import FakeSource
    from pluto_dvc.cache import build_cache
    from pluto_dvc.params import WorkerParams

    build_cache(
        pd.read_parquet(sys.argv[1]), sys.argv[2],
        FakeSource(counter=sys.argv[3], delay_s=float(sys.argv[4]), cost_maps=False),
        samples_per_shard=8, max_failure_ratio=0.0, worker=WorkerParams(kind=sys.argv[5]),
    )
    """
)


def test_killed_build_resumes_without_recomputing_finished_shards(tmp_path: Path):
    full = make_selection(8, 8)  # 8 shards of 8
    cache, counter = tmp_path / "cache", tmp_path / "count.txt"
    # a complete earlier cache of the first 3 logs
    first_logs = sorted(full.log_name.unique())[:3]
    _build(
        full[full.log_name.isin(first_logs)],
        cache,
        FakeSource(counter=str(counter), cost_maps=False),
    )
    assert len(read_counter(counter)) == 24
    sel_path = tmp_path / "sel.parquet"
    full.to_parquet(sel_path)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, "-c", _RUNNER, str(sel_path), str(cache), str(counter), "0.05"]
    proc = subprocess.Popen([*cmd, "processes"], env=env, start_new_session=True)
    shards = cache / "shards"
    deadline = time.monotonic() + 60
    try:
        while len(_finished(shards)) < 3 + 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its worker processes
        proc.wait()
    finished = _finished(shards)
    done_tokens = _tokens_in(finished)
    assert 40 <= len(done_tokens) < 64, "kill mid-run: some but not all shards finished"
    # the earlier manifest still points at complete, valid shards
    assert len(CacheDataset(tmp_path / "cache")) == 24
    verify_cache(cache)

    report = _build(full, cache, FakeSource(counter=str(counter), cost_maps=False))
    counts = Counter(token for _, token in read_counter(counter))
    assert all(counts[t] == 1 for t in done_tokens), "a finished shard was computed again"
    assert set(counts) == set(full.token)
    assert report.computed == 64 - len(done_tokens) and report.shards_kept >= 5
    assert not [p for p in shards.iterdir() if p.name.startswith(".tmp-")]
    _build(full, tmp_path / "clean", FakeSource(cost_maps=False))
    assert _files(cache) == _files(tmp_path / "clean")
