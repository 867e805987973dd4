"""The synthesize stage end to end: `dvc repro` on a temporary repo, determinism, atomic output."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from dvc_repo import DvcRepo

from pluto_dvc.nuplan.locations import LOCATIONS, MAPS_VERSION_JSON
from pluto_dvc.nuplan.log_reader import read_log_meta
from pluto_dvc.nuplan.map_reader import MapsRoot
from pluto_dvc.params import WorkerParams
from pluto_dvc.synthetic.dataset import synthesize_dataset
from pluto_dvc.testing.synthetic_factory import TINY_SYNTHETIC, tiny_synthetic_params

LOG_NAME = r"^\d{4}\.\d{2}\.\d{2}\.\d{2}\.\d{2}\.\d{2}_veh-\d{2}_\d{5}_\d{5}$"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_dataset_layout_is_the_nuplan_layout(tiny_synthetic):
    maps = MapsRoot(tiny_synthetic.maps_root)
    assert (tiny_synthetic.maps_root / MAPS_VERSION_JSON).is_file()
    for loc in LOCATIONS.values():  # all four maps, in their real version folders
        assert (
            maps.gpkg_path(loc.name)
            == tiny_synthetic.maps_root / loc.name / loc.version / "map.gpkg"
        )
    logs = tiny_synthetic.log_paths()
    assert len(logs) == TINY_SYNTHETIC["num_logs"]
    metas = [read_log_meta(p) for p in logs]
    assert {m.location for m in metas} == set(TINY_SYNTHETIC["log_locations"])
    for meta in metas:
        assert meta.log_name == Path(meta.path).stem
        assert re.match(LOG_NAME, meta.log_name), meta.log_name


def test_same_seed_same_bytes_for_any_worker_setting(tmp_path, tiny_synthetic):
    params = tiny_synthetic_params(tmp_path / "again")
    synthesize_dataset(params, WorkerParams(kind="processes", num_workers=2))
    assert _digests(tmp_path / "again") == _digests(tiny_synthetic.data_root)


def test_another_seed_gives_another_dataset(tmp_path, tiny_synthetic):
    params = tiny_synthetic_params(tmp_path / "other", seed=8, num_logs=1)
    synthesize_dataset(params, WorkerParams(kind="sequential"))
    ours = _digests(tmp_path / "other")
    theirs = _digests(tiny_synthetic.data_root)
    assert not set(ours.values()) & set(theirs.values())


def test_rerun_replaces_the_dataset_and_leaves_no_staging(tmp_path):
    out = tmp_path / "nuplan"
    short = {"minutes_per_log": 0.5, "map_size": "tiny"}
    synthesize_dataset(
        tiny_synthetic_params(out, num_logs=2, **short), WorkerParams(kind="sequential")
    )
    synthesize_dataset(
        tiny_synthetic_params(out, num_logs=1, **short), WorkerParams(kind="sequential")
    )
    assert len(list(out.rglob("*.db"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nuplan"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_logs"] == 1


@pytest.mark.slow
def test_dvc_repro_runs_synthesize_and_skips_when_nothing_changed(tmp_path):
    tiny = {k: v for k, v in TINY_SYNTHETIC.items()}
    tiny["num_logs"] = 1
    repo = DvcRepo(tmp_path / "repo", params={"synthetic": tiny, "worker": {"kind": "sequential"}})
    repo.repro("synthesize")
    out = repo.root / "data" / "nuplan-synthetic"
    assert len(list(out.rglob("*.db"))) == 1
    lock = (repo.root / "dvc.lock").read_text()
    assert "data/nuplan-synthetic" in lock and "md5" in lock

    again = repo.repro("synthesize")
    assert "didn't change" in again.stdout

    # worker settings are not a dependency: changing them runs nothing
    repo.update_params({"worker": {"num_workers": 2}})
    assert "didn't change" in repo.repro("synthesize").stdout

    repo.update_params({"synthetic": {"seed": 11}})
    changed = repo.repro("synthesize")
    assert "Running stage 'synthesize'" in changed.stdout
