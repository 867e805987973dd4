"""The feature probe keys the cache by what the feature code outputs, and the selection records
the dataset roots the later stages read (no `data`/`synthetic` params after select_scenarios)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluto_dvc.cache import run_build_cache
from pluto_dvc.cache.probe import PROBE_FORMAT, probe_info, read_probe, run_probe
from pluto_dvc.cache.source import FeatureSource, built_by_current_code, code_hash
from pluto_dvc.errors import DataError
from pluto_dvc.params import FeatureParams, parse_params
from pluto_dvc.selection import read_dataset_record, run_selection


@pytest.fixture(scope="module")
def probe() -> dict:
    return run_probe(FeatureParams())


def test_probe_is_a_pure_function_of_params_and_outputs(probe: dict):
    assert probe["format"] == PROBE_FORMAT and len(probe["digest"]) == 64
    assert probe["scenarios"] == 24 and probe["invalid"] < probe["scenarios"]  # mostly real samples
    assert "code_hash" not in json.dumps(probe)  # a comment edit cannot change the file
    assert run_probe(FeatureParams()) == probe  # deterministic
    other = run_probe(FeatureParams(radius_m=60.0))
    assert other["digest"] != probe["digest"]  # an output change shows


def test_probe_digest_keys_the_cache_fingerprint(probe: dict):
    features = FeatureParams()
    by_code = FeatureSource(features, "d", "m").fingerprint()
    by_probe = FeatureSource(features, "d", "m", probe_digest=probe["digest"]).fingerprint()
    other = FeatureSource(features, "d", "m", probe_digest="0" * 64).fingerprint()
    assert len({by_code, by_probe, other}) == 3
    meta = {"source": FeatureSource(features, "d", "m", probe_digest=probe["digest"]).describe()}
    assert built_by_current_code(meta, features)
    assert not built_by_current_code(meta, FeatureParams(radius_m=60.0))


def test_read_probe_refuses_missing_other_params_and_stale_code(tmp_path: Path, probe: dict):
    features = FeatureParams()
    digest, info = tmp_path / "probe.json", tmp_path / "info.json"
    with pytest.raises(DataError, match="dvc repro feature_probe"):
        read_probe(digest, features, None)
    digest.write_text(json.dumps(probe))
    info.write_text(json.dumps(probe_info()))
    assert read_probe(digest, features, info) == probe["digest"]
    with pytest.raises(DataError, match="other `features` params"):
        read_probe(digest, FeatureParams(radius_m=60.0), info)
    info.write_text(json.dumps({"code_hash": "f" * 64}))
    with pytest.raises(DataError, match="other feature code"):
        read_probe(digest, features, info)
    assert code_hash() != "f" * 64


def test_selection_records_the_dataset_and_build_cache_reads_it(tiny_synthetic, tmp_path: Path):
    root = tiny_synthetic.data_root
    params = parse_params(
        {
            "synthetic": {"output_dir": str(root), "seed": 7, "split": "mini"},
            "filter": {"limit_total_scenarios": 6},
            "worker": {"kind": "sequential"},
            "cache": {"max_failure_ratio": 1.0},
        }
    )
    scenarios = tmp_path / "scenarios.parquet"
    run_selection(params, scenarios, tmp_path / "summary.json")
    record = read_dataset_record(scenarios)
    assert record["data_root"] == root.as_posix() and record["synthetic"] is True
    assert record["maps_root"] == tiny_synthetic.maps_root.as_posix()
    assert record["logs"] and all(d.startswith("sha256:") for d in record["logs"].values())
    assert any(name.endswith(".gpkg") for name in record["maps"])

    # build_cache reads the roots from the selection: params pointing elsewhere do not matter
    elsewhere = params.model_copy(
        update={"synthetic": params.synthetic.model_copy(update={"output_dir": "/nonexistent"})}
    )
    report = run_build_cache(elsewhere, scenarios, tmp_path / "cache", None)
    assert report.summary["num_scenarios"] == 6 and report.summary["num_samples"] >= 1


def test_a_selection_without_a_record_says_what_to_run(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pluto_dvc.selection.output import SCHEMA

    path = tmp_path / "scenarios.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=SCHEMA), path)
    with pytest.raises(DataError, match="select_scenarios --force"):
        read_dataset_record(path)
