"""Scenario enumeration: the devkit's scene, tag and token rules on logs written to disk."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pluto_dvc.nuplan.log_reader import load_log
from pluto_dvc.nuplan.log_schema import tokens_hex
from pluto_dvc.nuplan.log_writer import write_log_db
from pluto_dvc.nuplan.scenarios import enumerate_scenarios, usable_scenes
from pluto_dvc.testing.log_factory import frame_rows, make_log_tables

# Scene names in time order: by name the order is a(1) b(4) c(0) d(6) e(3) f(5) g(2), so the
# usable scenes are c, d, e = time-order scenes 0, 6 and 3.
SHUFFLED_NAMES = ["scene-c", "scene-a", "scene-g", "scene-e", "scene-b", "scene-f", "scene-d"]
USABLE_FRAMES = [*range(0, 20), *range(60, 80), *range(120, 140)]


def _load(tmp_path: Path, name: str = "log", **kwargs):
    tables = make_log_tables(name, **kwargs)
    path = tmp_path / f"{name}.db"
    write_log_db(path, tables)
    return load_log(path), tables


@pytest.fixture(scope="module")
def log_and_tables(tmp_path_factory: pytest.TempPathFactory):
    return _load(tmp_path_factory.mktemp("scen"), scene_names=SHUFFLED_NAMES)


def _types(candidates) -> dict[int, str]:
    return dict(
        zip(candidates.frame_index.tolist(), candidates.scenario_type.tolist(), strict=True)
    )


def test_first_and_last_two_scenes_by_name_are_dropped(log_and_tables):
    log, _ = log_and_tables
    assert log.scenes.name.tolist() == sorted(SHUFFLED_NAMES)
    c = enumerate_scenarios(log)
    c.validate()
    assert c.frame_index.tolist() == USABLE_FRAMES  # in frame order
    assert usable_scenes(7).tolist() == [False, False, True, True, True, False, False]
    assert usable_scenes(5).tolist() == [False, False, True, False, False]
    assert not usable_scenes(4).any() and usable_scenes(0).shape == (0,)


def test_untagged_frames_are_unknown_and_greatest_tag_wins(log_and_tables):
    log, _ = log_and_tables
    types = _types(enumerate_scenarios(log))
    for i in USABLE_FRAMES:
        expected = {
            0: "stationary_in_traffic",  # > high_magnitude_speed
            3: "following_lane_with_lead",
            5: "starting_left_turn",  # > near_multiple_vehicles > changing_lane
        }.get(i % 10, "unknown")
        assert types[i] == expected, i


def test_type_filter_picks_greatest_surviving_tag(log_and_tables):
    log, _ = log_and_tables
    types = _types(enumerate_scenarios(log, ["changing_lane", "high_magnitude_speed"]))
    # frames whose tags all fail the filter, and untagged frames, are not candidates
    assert sorted(types) == [i for i in USABLE_FRAMES if i % 10 in (0, 5)]
    assert {types[i] for i in types if i % 10 == 0} == {"high_magnitude_speed"}
    assert {types[i] for i in types if i % 10 == 5} == {"changing_lane"}

    types = _types(enumerate_scenarios(log, {"near_multiple_vehicles", "changing_lane"}))
    assert set(types.values()) == {"near_multiple_vehicles"}
    assert len(types) == 6


def test_unknown_matches_only_when_in_the_filter(log_and_tables):
    log, _ = log_and_tables
    types = _types(enumerate_scenarios(log, ["unknown"]))
    assert sorted(types) == [i for i in USABLE_FRAMES if i % 10 not in (0, 3, 5)]
    assert set(types.values()) == {"unknown"}

    types = _types(enumerate_scenarios(log, ["unknown", "following_lane_with_lead"]))
    assert sorted(types) == [i for i in USABLE_FRAMES if i % 10 not in (0, 5)]
    assert {types[i] for i in types if i % 10 == 3} == {"following_lane_with_lead"}

    assert len(enumerate_scenarios(log, ["no_such_type"])) == 0
    assert len(enumerate_scenarios(log, [])) == 0


def test_tokens_are_lidar_pc_tokens_as_16_hex(log_and_tables):
    log, tables = log_and_tables
    c = enumerate_scenarios(log)
    assert c.token_hex.dtype == np.dtype("<U16")
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in c.token_hex)
    pc = tables["lidar_pc"]
    rows = frame_rows(tables)
    assert c.token_hex.tolist() == [pc["token"][rows[i]].hex() for i in USABLE_FRAMES]
    assert c.timestamp_us.tolist() == [pc["timestamp"][rows[i]] for i in USABLE_FRAMES]
    np.testing.assert_array_equal(c.token_hex, tokens_hex(log.clock.token[c.frame_index]))
    assert len(set(c.token_hex.tolist())) == len(c)


def test_small_logs_and_frames_without_scene(tmp_path: Path):
    log, _ = _load(tmp_path, "four", num_scenes=4, frames_per_scene=5)
    assert len(enumerate_scenarios(log)) == 0
    log, _ = _load(tmp_path, "five", num_scenes=5, frames_per_scene=5)
    assert enumerate_scenarios(log).frame_index.tolist() == list(range(10, 15))

    tables = make_log_tables("noscene", num_scenes=5, frames_per_scene=5)
    rows = frame_rows(tables)
    for i in (11, 12):
        tables["lidar_pc"]["scene_token"][rows[i]] = None
    write_log_db(tmp_path / "noscene.db", tables)
    log = load_log(tmp_path / "noscene.db")
    assert log.clock.scene_index[10:15].tolist() == [2, -1, -1, 2, 2]
    assert enumerate_scenarios(log).frame_index.tolist() == [10, 13, 14]
