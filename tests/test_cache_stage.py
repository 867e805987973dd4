"""The build_cache stage: params in, data/cache + summary metric out, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluto_dvc.cache import CacheBuildError, CacheDataset, run_build_cache
from pluto_dvc.cli import main
from pluto_dvc.params import parse_params
from pluto_dvc.selection.output import SCHEMA
from pluto_dvc.testing.cache_fakes import FakeSource, make_selection


def _write_selection(path: Path, num_logs: int, per_log: int):
    selection = make_selection(num_logs, per_log)
    pq.write_table(pa.Table.from_pandas(selection, schema=SCHEMA, preserve_index=False), path)
    return selection


def _params(**cache):
    return parse_params({"cache": cache, "worker": {"kind": "sequential"}})


def test_stage_writes_the_cache_and_a_summary_metric(tmp_path: Path):
    selection = _write_selection(tmp_path / "scenarios.parquet", 3, 5)
    report = run_build_cache(
        _params(samples_per_shard=4, max_failure_ratio=0.1),
        scenarios_path=tmp_path / "scenarios.parquet",
        cache_dir=tmp_path / "cache",
        summary_path=tmp_path / "cache_summary.json",
        source=FakeSource(invalid=frozenset(selection.token[[4]]), cost_maps=False),
    )
    summary = json.loads((tmp_path / "cache_summary.json").read_text())
    assert summary == report.summary
    assert summary["num_scenarios"] == 15 and summary["num_samples"] == 14
    assert summary["num_shards"] == 6 and summary["failures_by_kind"] == {"invalid": 1}
    assert len(CacheDataset(tmp_path / "cache")) == 14


def test_stage_failure_still_writes_the_summary(tmp_path: Path):
    selection = _write_selection(tmp_path / "scenarios.parquet", 1, 4)
    with pytest.raises(CacheBuildError, match="max_failure_ratio"):
        run_build_cache(
            _params(max_failure_ratio=0.0),
            scenarios_path=tmp_path / "scenarios.parquet",
            cache_dir=tmp_path / "cache",
            summary_path=tmp_path / "cache_summary.json",
            source=FakeSource(crash=frozenset(selection.token[:1]), cost_maps=False),
        )
    assert json.loads((tmp_path / "cache_summary.json").read_text())["num_failures"] == 1


def test_cli_without_a_selection_says_what_to_run(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build-cache"]) == 2
    err = capsys.readouterr().err
    assert "data/scenarios.parquet does not exist" in err and "select_scenarios" in err
    assert main(["cache", "verify"]) == 2
    assert "dvc repro build_cache" in capsys.readouterr().err


def test_fingerprint_follows_sample_params_not_layout_params():
    from pluto_dvc.cache import FeatureSource
    from pluto_dvc.params import CacheParams, FeatureParams

    def fp(**kw):
        return FeatureSource(FeatureParams(**kw), "data", "maps").fingerprint()

    base = fp()
    # the layout params live in their own section, which the fingerprint never reads
    assert set(CacheParams.model_fields) == {"max_failure_ratio", "samples_per_shard"}
    assert not set(CacheParams.model_fields) & set(FeatureParams.model_fields)
    assert fp(radius_m=100.0) != base and fp(build_cost_map=False) != base
    described = FeatureSource(FeatureParams(), "data", "maps").describe()
    assert "samples_per_shard" not in described["features"] and len(described["code_hash"]) == 64
