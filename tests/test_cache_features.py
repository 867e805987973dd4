"""The cache with the real feature builder on the tiny synthetic dataset, and under `dvc repro`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dvc_repo import DvcRepo

from pluto_dvc.cache import CacheDataset, FeatureSource, build_cache, read_failures
from pluto_dvc.cache.inspect import verify_cache
from pluto_dvc.features import LogFeatureBuilder
from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.log_schema import tokens_hex
from pluto_dvc.nuplan.map_reader import MapsRoot
from pluto_dvc.params import FeatureParams, FilterParams, WorkerParams
from pluto_dvc.selection import resolve_filter, select_scenarios
from pluto_dvc.selection.output import to_arrow
from pluto_dvc.testing.synthetic_factory import TINY_SYNTHETIC


@pytest.fixture(scope="module")
def selection(tiny_synthetic):
    chosen = select_scenarios(
        tiny_synthetic, resolve_filter(FilterParams()), WorkerParams(kind="sequential")
    )
    table = to_arrow(chosen.table).to_pandas()
    return table.sort_values("token").iloc[::9].reset_index(drop=True)  # ~every 9th scenario


def test_real_builder_cache_holds_exactly_what_the_builder_returns(
    tiny_synthetic, selection, tmp_path: Path
):
    features = FeatureParams()
    source = FeatureSource(
        features,
        str(tiny_synthetic.data_root),
        str(tiny_synthetic.maps_root),
        digest_state=str(tmp_path / "digests.json"),
    )
    report = build_cache(
        selection,
        tmp_path / "cache",
        source,
        samples_per_shard=16,
        max_failure_ratio=0.5,
        worker=WorkerParams(kind="processes", num_workers=2),
    )
    s = report.summary
    assert s["num_scenarios"] == len(selection) and s["num_samples"] > 0.5 * len(selection)
    assert set(s["failures_by_kind"]) <= {"invalid"}  # only FeatureErrors, no bugs
    verify_cache(tmp_path / "cache")
    # every stored sample equals a direct build (same keys, dtypes, shapes, values)
    ds = CacheDataset(tmp_path / "cache")
    rows = ds.table.to_pandas()
    paths = dict(zip(selection.log_name, selection.log_path, strict=True))
    maps = MapsRoot(tiny_synthetic.maps_root)
    for log_name in rows.log_name.unique():
        log = load_log(tiny_synthetic.data_root / paths[log_name])
        builder = LogFeatureBuilder(features, log, maps.load(log.meta.location))
        frames = {t: i for i, t in enumerate(tokens_hex(log.clock.token).tolist())}
        for i in np.flatnonzero(rows.log_name.to_numpy() == log_name)[:3]:
            want = builder.build(frames[rows.token[i]])
            got = ds[int(i)]
            assert set(got) == set(want)
            for key, value in want.items():
                assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
                np.testing.assert_array_equal(got[key], value, err_msg=key)
    for reason in read_failures(tmp_path / "cache").column("reason").to_pylist():
        assert reason  # FeatureError reasons are recorded
    assert json.loads((tmp_path / "digests.json").read_text())  # log digests remembered
    # a second run finds everything done
    again = build_cache(
        selection,
        tmp_path / "cache",
        source,
        samples_per_shard=16,
        max_failure_ratio=0.5,
        worker=WorkerParams(kind="sequential"),
    )
    assert (again.computed, again.shards_written) == (0, 0)


def _counts(stdout: str) -> tuple[int, int]:
    m = re.search(r"computed (\d+), reused (\d+) samples", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


def _tokens(root: Path) -> tuple[set[str], set[str]]:
    """(tokens of data/scenarios.parquet, tokens cached or known invalid in data/cache)."""
    selected = set(pq.read_table(root / "data" / "scenarios.parquet").column("token").to_pylist())
    done = set(CacheDataset(root / "data" / "cache").table.column("token").to_pylist())
    failed = read_failures(root / "data" / "cache").to_pandas()
    return selected, done | set(failed.token[failed.kind == "invalid"])


@pytest.mark.slow
def test_dvc_repro_builds_keeps_and_grows_the_cache(tmp_path: Path):
    repo = DvcRepo(
        tmp_path / "repo",
        params={
            "synthetic": TINY_SYNTHETIC,
            "filter": {"limit_total_scenarios": 30, "shuffle": True},
            "worker": {"kind": "processes", "num_workers": 2},
            "cache": {"max_failure_ratio": 0.5},
        },
    )
    assert _counts(repo.repro("build_cache").stdout)[0] == 30
    summary = json.loads((repo.root / "data" / "cache_summary.json").read_text())
    assert summary["num_scenarios"] == 30
    assert "up to date" in repo.run("dvc", "status", "build_cache").stdout
    verified = repo.run("pluto-dvc", "cache", "verify").stdout
    assert "every SHA-256 and CRC-32 matches" in verified

    # a param that changes no sample re-runs the stage (DVC), which computes nothing (persist)
    repo.update_params({"cache": {"max_failure_ratio": 0.6}})
    assert _counts(repo.repro("build_cache").stdout) == (0, 0)

    # growing the selection computes only the scenarios not cached yet
    _, before = _tokens(repo.root)
    repo.update_params({"filter": {"limit_total_scenarios": 60}})
    computed, _ = _counts(repo.repro("build_cache").stdout)
    selected, _ = _tokens(repo.root)
    assert len(selected) == 60 and computed == len(selected - before) < 60

    # worker settings are not a dependency
    repo.update_params({"worker": {"kind": "sequential"}})
    assert "up to date" in repo.run("dvc", "status", "build_cache").stdout
