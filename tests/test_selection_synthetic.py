"""Selection and split on the synthetic dataset: real maps and routes, and the DVC stages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.log_schema import tokens_hex
from pluto_dvc.params import FilterParams, WorkerParams
from pluto_dvc.selection import resolve_filter, select_scenarios
from pluto_dvc.selection.output import token_strings

SEQUENTIAL = WorkerParams(kind="sequential")


def _rows(sel) -> set[tuple[str, str, str]]:
    t = sel.table
    tokens = token_strings(t.token).to_pylist()
    return {
        (t.logs.log_name[g], tok, t.type_names[c])
        for g, tok, c in zip(t.log, tokens, t.type_code, strict=True)
    }


def test_default_selection_matches_the_full_log_reader(tiny_synthetic):
    """Every frame of a usable scene with a goal, typed by its greatest tag (via load_log)."""
    expected = set()
    for path in tiny_synthetic.log_paths():
        log = load_log(path)
        usable = np.zeros(log.num_scenes, dtype=bool)
        usable[2 : max(log.num_scenes - 2, 2)] = True
        tags: dict[int, list[str]] = {}
        for f, typ in zip(log.tags.frame_index, log.tags.type, strict=True):
            tags.setdefault(int(f), []).append(str(typ))
        hex_tokens = tokens_hex(log.clock.token)
        for f, s in enumerate(log.clock.scene_index):
            if s >= 0 and usable[s] and not np.isnan(log.scenes.goal_x[s]):
                typ = max(tags[f]) if f in tags else "unknown"
                expected.add((path.stem, str(hex_tokens[f]), typ))
    sel = select_scenarios(tiny_synthetic, resolve_filter(FilterParams()), SEQUENTIAL)
    assert _rows(sel) == expected
    assert len(expected) > 100


def test_route_radius_on_synthetic_maps_is_monotonic(tiny_synthetic):
    def kept(radius: float) -> set:
        flt = resolve_filter(FilterParams(ego_route_radius=radius, limit_total_scenarios=400))
        return _rows(select_scenarios(tiny_synthetic, flt, SEQUENTIAL))

    everything = _rows(
        select_scenarios(
            tiny_synthetic, resolve_filter(FilterParams(limit_total_scenarios=400)), SEQUENTIAL
        )
    )
    small, large = kept(0.5), kept(30.0)
    assert small <= large <= everything
    assert len(small) > 0.5 * len(everything)  # the synthetic ego drives its route


@pytest.mark.slow
def test_dvc_pipeline_select_and_split(tmp_path):
    from dvc_repo import DvcRepo

    from pluto_dvc.testing.synthetic_factory import TINY_SYNTHETIC

    repo = DvcRepo(
        tmp_path / "repo",
        params={
            "synthetic": dict(TINY_SYNTHETIC, num_logs=4),
            "filter": {"limit_total_scenarios": 0.5},
            "worker": {"kind": "sequential"},
        },
    )
    repo.run("dvc", "repro", "split")
    summary = json.loads((repo.root / "data" / "scenarios_summary.json").read_text())
    splits = json.loads((repo.root / "data" / "splits.json").read_text())
    assert summary["num_logs"] == 4 and summary["num_scenarios"] > 0
    assert sorted(len(splits[p]) for p in ("train", "val", "test")) == [1, 1, 2]
    metrics = repo.run("dvc", "metrics", "show", "--json").stdout
    assert "num_scenarios" in metrics
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    repo.update_params({"split": {"seed": 5}})
    out = repo.run("dvc", "repro", "split").stdout
    assert "Running stage 'split'" in out and "Running stage 'select_scenarios'" not in out
