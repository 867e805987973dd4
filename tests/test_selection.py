"""select_scenarios: every SQL-level filter and global cap against an independent computation.

The reference model below re-implements the devkit's semantics literally in plain Python over the
raw log tables (dicts of lists, before they are written): the devkit's candidate query, per-type
scenario lists in log then timestamp order, ``[::step][:n]`` equisampling, the unknown-first total
limit and the greedy timestamp threshold. The code under test reads the written .db files.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pluto_dvc.cli import main
from pluto_dvc.dataset_paths import DatasetPaths
from pluto_dvc.errors import DataError, ParamsError
from pluto_dvc.nuplan.log_schema import MERGED_POINT_CLOUD
from pluto_dvc.nuplan.log_writer import write_log_db
from pluto_dvc.params import FilterParams, WorkerParams
from pluto_dvc.selection import resolve_filter, select_scenarios, write_selection
from pluto_dvc.selection.output import read_scenarios, token_strings
from pluto_dvc.testing.log_factory import make_log_tables

SEQUENTIAL = WorkerParams(kind="sequential")
FRAMES_PER_SCENE = 40  # 2 s scenes; 10 scenes = a 20 s log, usable frames 80..319
NUM_SCENES = 10
LAS_VEGAS, PITTSBURGH = "us-nv-las-vegas-strip", "us-pa-pittsburgh-hazelwood"


# ------------------------------------------------------------------------------- test dataset


def log_name(i: int) -> str:
    return f"2021.07.16.20.{10 + i:02d}.00_veh-35_0{i}000_0{i}999"


def tag_pattern(seed: int, num_frames: int) -> dict[int, tuple[str, ...]]:
    """A varied, reproducible tag layout: several tags per frame, some types rare."""
    rng = np.random.default_rng(100 + seed)
    pool = [
        "changing_lane",
        "following_lane_with_lead",
        "near_multiple_vehicles",
        "starting_left_turn",
        "stationary_in_traffic",
        "high_magnitude_speed",
    ]
    tags: dict[int, tuple[str, ...]] = {}
    for i in range(num_frames):
        r = rng.random()
        if r < 0.35:
            k = 1 + int(rng.integers(0, 3))
            tags[i] = tuple(rng.choice(pool[: 4 + seed % 3], size=k, replace=False))
        elif r < 0.37:
            tags[i] = ("waiting_for_pedestrian_to_cross",)
    return tags


def shift_time(tables: dict, offset_us: int) -> None:
    """Move a log in time (lidar_pc and ego_pose timestamps)."""
    for table in ("lidar_pc", "ego_pose"):
        tables[table]["timestamp"] = [t + offset_us for t in tables[table]["timestamp"]]
    tables["log"]["timestamp"] = [t + offset_us for t in tables["log"]["timestamp"]]


def set_motion(tables: dict, speed: Callable[[float], float], heading: float = 0.3) -> None:
    """Ego drives straight along ``heading`` with ``speed(t)`` (m/s; t in s from the log start).

    Poses are at 40 Hz (pose 2i at frame i); positions integrate the speed.
    """
    ego = tables["ego_pose"]
    t0 = ego["timestamp"][0]
    times = [(t - t0) * 1e-6 for t in ego["timestamp"]]
    v = [speed(t) for t in times]
    x, y = [664_000.0], [3_997_000.0]
    for k in range(1, len(v)):
        dt = times[k] - times[k - 1]
        x.append(x[-1] + v[k - 1] * math.cos(heading) * dt)
        y.append(y[-1] + v[k - 1] * math.sin(heading) * dt)
    ego["x"], ego["y"], ego["vx"], ego["vy"] = x, y, v, [0.0] * len(v)
    ego["qw"] = [math.cos(heading / 2)] * len(v)
    ego["qz"] = [math.sin(heading / 2)] * len(v)


def build_tables(i: int, location: str = LAS_VEGAS, goal_less: Sequence[int] = (1,)) -> dict:
    n = NUM_SCENES * FRAMES_PER_SCENE
    tables = make_log_tables(
        log_name(i),
        location=location,
        num_scenes=NUM_SCENES,
        frames_per_scene=FRAMES_PER_SCENE,
        num_tracks=2,
        tags=tag_pattern(i, n),
        goal_less_scenes=goal_less,
        lights_per_frame=0,
        seed=i,
    )
    shift_time(tables, 7_300_000 * i)  # logs overlap in time: 20 s long, 7.3 s apart
    return tables


@dataclass
class Dataset:
    paths: DatasetPaths
    tables: dict[str, dict]  # log name -> raw tables (as written)


def write_dataset(root: Path, tables: dict[str, dict]) -> Dataset:
    logs = root / "nuplan-v1.1" / "splits" / "mini"
    logs.mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        write_log_db(logs / f"{name}.db", t)
    paths = DatasetPaths(data_root=root, logs_dir=logs, maps_root=root / "maps", synthetic=True)
    return Dataset(paths=paths, tables=dict(sorted(tables.items())))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("sel")
    tables = {}
    for i in range(5):
        location = PITTSBURGH if i == 3 else LAS_VEGAS
        tables[log_name(i)] = build_tables(i, location, goal_less=(1,) if i % 2 else (1, 4, 5))
    return write_dataset(root, tables)


# ---------------------------------------------------------------------------- reference model


@dataclass(frozen=True)
class Ref:
    log: str
    token: str
    type: str
    timestamp: int


def ref_candidates(
    ds: Dataset,
    types: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
    goals: bool = False,
    logs: Sequence[str] | None = None,
    maps: Sequence[str] | None = None,
) -> list[Ref]:
    """The devkit's candidate query, per log (name order), rows in timestamp order."""
    out = []
    for name, t in ds.tables.items():
        if logs is not None and name not in logs:
            continue
        if maps is not None and t["log"]["map_version"][0] not in maps:
            continue
        merged = {
            tok
            for tok, ch in zip(t["lidar"]["token"], t["lidar"]["channel"], strict=True)
            if ch == MERGED_POINT_CLOUD
        }
        sc = t["scene"]
        scenes = sorted(zip(sc["name"], sc["token"], sc["goal_ego_pose_token"], strict=True))
        valid = {tok for k, (_, tok, _) in enumerate(scenes) if 3 <= k + 1 < len(scenes) - 1}
        ego_tokens = set(t["ego_pose"]["token"])
        with_goal = {tok for _, tok, g in scenes if g is not None and g in ego_tokens}
        tags = defaultdict(list)
        for pc_token, typ in zip(
            t["scenario_tag"]["lidar_pc_token"], t["scenario_tag"]["type"], strict=True
        ):
            tags[pc_token].append(typ)
        pc = t["lidar_pc"]
        for r in sorted(range(len(pc["token"])), key=lambda r: pc["timestamp"][r]):
            tok, scene = pc["token"][r], pc["scene_token"][r]
            if pc["lidar_token"][r] not in merged or scene not in valid:
                continue
            kept = [x for x in tags[tok] if types is None or x in types]
            if types is not None and not kept:
                continue
            if tokens is not None and tok.hex() not in tokens:
                continue
            if goals and scene not in with_goal:
                continue
            out.append(Ref(name, tok.hex(), max(kept) if kept else "unknown", pc["timestamp"][r]))
    return out


def by_type(rows: list[Ref]) -> dict[str, list[Ref]]:
    d: dict[str, list[Ref]] = defaultdict(list)
    for r in rows:
        d[r.type].append(r)
    return d


def flat(d: dict[str, list[Ref]]) -> list[Ref]:
    return sorted((r for rows in d.values() for r in rows), key=lambda r: r.token)


def ref_num_per_type(d: dict[str, list[Ref]], n: int) -> dict[str, list[Ref]]:
    return {t: rows[:: max(len(rows) // n, 1)][:n] for t, rows in d.items()}


def ref_limit_total(d: dict[str, list[Ref]], limit: int | float) -> dict[str, list[Ref]]:
    total = sum(len(v) for v in d.values())
    required = limit if isinstance(limit, int) else math.ceil(limit * total)
    if isinstance(limit, int) and required >= total:
        return d

    def sample(rows: list[Ref], keep: int) -> list[Ref]:
        return rows[:: max(len(rows) // keep, 1)][:keep]

    d = dict(d)
    if "unknown" in d:
        n_unknown = len(d["unknown"])
        if total - required < n_unknown:
            d["unknown"] = sample(d["unknown"], n_unknown - (total - required))
            return d
        d.pop("unknown")
    return by_type(sample(flat(d), required))


def ref_timestamp(d: dict[str, list[Ref]], threshold: float) -> dict[str, list[Ref]]:
    out = {}
    for t, rows in d.items():
        rows = sorted(rows, key=lambda r: r.timestamp)
        kept, next_s = [], rows[0].timestamp * 1e-6
        for r in rows:
            if r.timestamp * 1e-6 >= next_s:
                kept.append(r)
                next_s = r.timestamp * 1e-6 + threshold
        out[t] = kept
    return out


def selected(ds: Dataset, worker: WorkerParams = SEQUENTIAL, **fields) -> list[Ref]:
    sel = select_scenarios(ds.paths, resolve_filter(FilterParams(**fields)), worker)
    t = sel.table
    tokens = token_strings(t.token).to_pylist()
    return [
        Ref(t.logs.log_name[g], tok, t.type_names[c], int(ts))
        for g, tok, c, ts in zip(t.log, tokens, t.type_code, t.timestamp_us, strict=True)
    ]


# ------------------------------------------------------------------------------ SQL filters


def test_default_keeps_every_frame_of_usable_scenes_with_a_goal(dataset):
    got = selected(dataset)
    expected = flat(by_type(ref_candidates(dataset, goals=True)))
    assert got == expected  # same rows, sorted by token
    assert len(got) > 500 and {r.type for r in got} >= {"unknown", "changing_lane"}


def test_remove_invalid_goals_false_keeps_goal_less_scenes(dataset):
    got = selected(dataset, remove_invalid_goals=False)
    expected = flat(by_type(ref_candidates(dataset)))
    assert got == expected
    assert len(got) > len(selected(dataset))  # log 0, 2, 4 have goal-less usable scenes 4, 5


def test_scenario_types_take_the_greatest_surviving_tag(dataset):
    types = ["changing_lane", "near_multiple_vehicles", "waiting_for_pedestrian_to_cross"]
    got = selected(dataset, scenario_types=types)
    expected = flat(by_type(ref_candidates(dataset, types=types, goals=True)))
    assert got == expected
    assert {r.type for r in got} == set(types)
    # a frame tagged (starting_left_turn, near_multiple_vehicles) is near_multiple_vehicles here
    all_types = {(r.log, r.token): r.type for r in selected(dataset)}
    assert any(all_types[(r.log, r.token)] != r.type for r in got)


def test_scenario_tokens_keep_only_listed_frames_of_usable_scenes(dataset):
    all_rows = ref_candidates(dataset)
    rng = np.random.default_rng(0)
    picked = [all_rows[i].token for i in rng.choice(len(all_rows), 40, replace=False)]
    unusable = next(iter(dataset.tables.values()))["lidar_pc"]["token"]
    extra = [tok.hex() for tok in unusable[:50]]  # some fall in unusable scenes
    tokens = sorted(set(picked + extra + ["00112233445566ff"]))
    got = selected(dataset, scenario_tokens=[t.upper() for t in tokens], remove_invalid_goals=False)
    expected = flat(by_type(ref_candidates(dataset, tokens=tokens)))
    assert got == expected and 40 <= len(got) < len(tokens)


def test_log_names_and_map_names(dataset):
    names = [log_name(1), log_name(3)]
    got = selected(dataset, log_names=[f"{names[0]}.db", names[1]])
    assert got == flat(by_type(ref_candidates(dataset, goals=True, logs=names)))
    got = selected(dataset, map_names=[PITTSBURGH])
    assert got == flat(by_type(ref_candidates(dataset, goals=True, maps=[PITTSBURGH])))
    assert {r.log for r in got} == {log_name(3)}


# ------------------------------------------------------------------------------ global caps


def test_num_scenarios_per_type_is_evenly_spaced_without_shuffle(dataset):
    available = by_type(ref_candidates(dataset, goals=True))
    got = selected(dataset, num_scenarios_per_type=40)
    assert got == flat(ref_num_per_type(available, 40))
    counts = {t: len(rows) for t, rows in by_type(got).items()}
    assert counts == {t: min(40, len(rows)) for t, rows in available.items()}
    assert min(counts.values()) < 40 < max(len(rows) for rows in available.values())


@pytest.mark.parametrize("limit", [1200, 600, 150, 31])
def test_int_limit_drops_unknown_first_then_samples_by_token(dataset, limit):
    rows = ref_candidates(dataset, goals=True)
    got = selected(dataset, limit_total_scenarios=limit)
    assert got == flat(ref_limit_total(by_type(rows), limit))
    assert len(got) == min(limit, len(rows))
    n_labelled = sum(r.type != "unknown" for r in rows)
    if limit <= n_labelled:
        assert all(r.type != "unknown" for r in got)
    else:
        assert sum(r.type != "unknown" for r in got) == n_labelled


@pytest.mark.parametrize("fraction", [0.8, 0.25, 0.01])
def test_float_limit_is_a_fraction_of_the_candidates(dataset, fraction):
    rows = ref_candidates(dataset, goals=True)
    got = selected(dataset, limit_total_scenarios=fraction)
    assert got == flat(ref_limit_total(by_type(rows), fraction))
    assert len(got) == math.ceil(fraction * len(rows))


def test_num_per_type_then_limit_total_compose_in_order(dataset):
    rows = ref_candidates(dataset, goals=True)
    got = selected(dataset, num_scenarios_per_type=20, limit_total_scenarios=0.5)
    assert got == flat(ref_limit_total(ref_num_per_type(by_type(rows), 20), 0.5))


@pytest.mark.parametrize("threshold", [0.0, 0.7, 4.0])
def test_timestamp_threshold_is_greedy_per_type_across_logs(dataset, threshold):
    rows = ref_candidates(dataset, goals=True)
    got = selected(dataset, timestamp_threshold_s=threshold)
    assert got == flat(ref_timestamp(by_type(rows), threshold))
    if threshold == 0.0:
        assert len(got) == len(rows)
    for typ, kept in by_type(got).items():
        times = sorted(r.timestamp for r in kept)
        assert all(b - a >= threshold * 1e6 - 1 for a, b in itertools.pairwise(times)), typ


# -------------------------------------------------------------------------- order and output


def test_result_is_sorted_by_token_unless_shuffled(dataset):
    plain = selected(dataset, limit_total_scenarios=300)
    assert [r.token for r in plain] == sorted(r.token for r in plain)
    a = selected(dataset, limit_total_scenarios=300, shuffle=True, seed=1)
    b = selected(dataset, limit_total_scenarios=300, shuffle=True, seed=1)
    c = selected(dataset, limit_total_scenarios=300, shuffle=True, seed=2)
    assert a == b
    assert a != c and {r.token for r in a} != {r.token for r in c}  # another sample, another order
    assert [r.token for r in a] != sorted(r.token for r in a)
    assert len(a) == len(c) == 300


def test_shuffled_per_type_sample_is_seeded_and_random(dataset):
    a = selected(dataset, num_scenarios_per_type=5, shuffle=True, seed=3)
    b = selected(dataset, num_scenarios_per_type=5, shuffle=True, seed=3)
    c = selected(dataset, num_scenarios_per_type=5, shuffle=True, seed=4)
    even = selected(dataset, num_scenarios_per_type=5)
    assert a == b and set(a) != set(c) and set(a) != set(even)
    assert sorted(map(repr, a)) != sorted(map(repr, even))
    for typ, rows in by_type(a).items():
        assert len(rows) == min(5, len(by_type(even)[typ]))


def test_outputs_are_written_atomically_and_byte_identical(dataset, tmp_path):
    flt = resolve_filter(FilterParams(limit_total_scenarios=0.3))
    sel = select_scenarios(dataset.paths, flt, SEQUENTIAL)
    out1, out2 = tmp_path / "a" / "scenarios.parquet", tmp_path / "b" / "scenarios.parquet"
    write_selection(sel.table, sel.summary, out1, tmp_path / "a" / "summary.json")
    again = select_scenarios(dataset.paths, flt, SEQUENTIAL)
    write_selection(again.table, again.summary, out2, tmp_path / "b" / "summary.json")
    assert out1.read_bytes() == out2.read_bytes()
    assert sorted(os.listdir(tmp_path / "a")) == ["scenarios.parquet", "summary.json"]
    table = read_scenarios(out1)
    assert table.column_names == [
        "log_name",
        "token",
        "scenario_type",
        "timestamp_us",
        "map_name",
        "log_path",
    ]
    rows = table.to_pylist()
    expected = flat(ref_limit_total(by_type(ref_candidates(dataset, goals=True)), 0.3))
    assert [(r["log_name"], r["token"], r["scenario_type"], r["timestamp_us"]) for r in rows] == [
        (e.log, e.token, e.type, e.timestamp) for e in expected
    ]
    for r in rows:
        assert r["log_path"] == f"nuplan-v1.1/splits/mini/{r['log_name']}.db"
        location = dataset.tables[r["log_name"]]["log"]["map_version"][0]
        assert r["map_name"] == location


def test_summary_counts(dataset, tmp_path):
    flt = resolve_filter(
        FilterParams(
            scenario_types=["changing_lane", "starting_left_turn"], num_scenarios_per_type=9
        )
    )
    sel = select_scenarios(dataset.paths, flt, SEQUENTIAL)
    s = sel.summary
    all_rows = ref_candidates(dataset)
    typed = ref_candidates(dataset, types=["changing_lane", "starting_left_turn"])
    with_goal = ref_candidates(dataset, types=["changing_lane", "starting_left_turn"], goals=True)
    assert s["num_candidates"] == len(all_rows)
    assert s["removed_by_filter"] == {
        "scenario_types": len(all_rows) - len(typed),
        "remove_invalid_goals": len(typed) - len(with_goal),
        "num_scenarios_per_type": len(with_goal) - 18,
    }
    assert s["num_scenarios"] == 18 and s["per_type"] == {
        "changing_lane": 9,
        "starting_left_turn": 9,
    }
    assert sum(s["per_log"].values()) == 18 and sum(s["per_map"].values()) == 18
    got = selected(
        dataset, scenario_types=["changing_lane", "starting_left_turn"], num_scenarios_per_type=9
    )
    per_log = defaultdict(int)
    for r in got:
        per_log[r.log] += 1
    assert s["per_log"] == dict(sorted(per_log.items()))
    json.dumps(s)  # JSON-ready


def test_worker_kinds_and_counts_give_identical_results(dataset, tmp_path):
    flt = resolve_filter(
        FilterParams(limit_total_scenarios=0.4, shuffle=True, ego_displacement_minimum_m=1.0)
    )
    outputs = []
    for i, worker in enumerate(
        [
            SEQUENTIAL,
            WorkerParams(kind="processes", num_workers=2),
            WorkerParams(kind="processes", num_workers=3),
        ]
    ):
        sel = select_scenarios(dataset.paths, flt, worker)
        path = tmp_path / f"{i}.parquet"
        write_selection(sel.table, sel.summary, path, tmp_path / f"{i}.json")
        outputs.append((path.read_bytes(), (tmp_path / f"{i}.json").read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    assert pq.read_table(tmp_path / "0.parquet").num_rows > 0


# ------------------------------------------------------------------------------------ presets


def test_presets_are_one_setting_and_explicit_fields_override():
    tiny = resolve_filter(FilterParams(preset="tiny_50"))
    assert (tiny.limit_total_scenarios, tiny.shuffle, tiny.expand_scenarios) == (50, True, True)
    assert tiny.remove_invalid_goals is True
    million = resolve_filter(FilterParams(preset="one_million"))
    assert (million.limit_total_scenarios, million.shuffle) == (1_000_000, False)
    val14 = resolve_filter(FilterParams(preset="val14"))
    assert len(val14.scenario_types) == 14 and len(val14.scenario_tokens) == 1090
    assert (val14.timestamp_threshold_s, val14.remove_invalid_goals, val14.shuffle) == (
        15.0,
        True,
        False,
    )
    assert val14.expand_scenarios is False
    challenge = resolve_filter(FilterParams(preset="challenge_14"))
    assert challenge.scenario_types == val14.scenario_types and challenge.scenario_tokens is None
    mine = resolve_filter(FilterParams(preset="tiny_50", limit_total_scenarios=7, shuffle=False))
    assert (mine.limit_total_scenarios, mine.shuffle, mine.remove_invalid_goals) == (7, False, True)
    plain = resolve_filter(FilterParams())
    assert plain.limit_total_scenarios is None and plain.speed_noise_tolerance == 0.1


def test_tiny_50_preset_selects_50_labelled_scenarios(dataset):
    got = selected(dataset, preset="tiny_50")
    assert len(got) == 50 and all(r.type != "unknown" for r in got)
    assert got == selected(dataset, preset="tiny_50")


def test_val14_preset_finds_nothing_in_synthetic_logs_and_says_why(dataset):
    with pytest.raises(
        ParamsError,
        match=r"filter.scenario_tokens \(with filter.preset .val14.\) removed the last .*real nuPlan",
    ):
        selected(dataset, preset="val14")


# --------------------------------------------------------------------------- errors and CLI


def _cli(tmp_path: Path, ds: Dataset, filter_yaml: dict, capsys) -> tuple[int, str]:
    params = {
        "data": {
            "nuplan_root": str(ds.paths.data_root),
            "maps_root": str(tmp_path),
            "split": "mini",
        },
        "worker": {"kind": "sequential"},
        "filter": filter_yaml,
    }
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(params))  # JSON is YAML
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        code = main(["select", "--params", str(path)])
    finally:
        os.chdir(cwd)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("filter_yaml", "words"),
    [
        ({"limit_total_scenarios": 1.5}, ["filter.limit_total_scenarios", "(0, 1)"]),
        ({"limit_total_scenarios": 0}, ["filter.limit_total_scenarios", ">= 1"]),
        ({"num_scenarios_per_type": -2}, ["filter.num_scenarios_per_type", "greater than"]),
        ({"scenario_types": ["left_turn"]}, ["left_turn", "starting_left_turn", "changing_lane"]),
        ({"scenario_tokens": ["abc123"]}, ["'abc123' is not 16 hex characters"]),
        ({"scenario_tokens": [1234567890123456]}, ["quote tokens"]),
        ({"token_set_path": "x.json"}, ["fraction_in_token_set_threshold"]),
        ({"preset": "huge"}, ["filter.preset", "tiny_50"]),
    ],
)
def test_bad_filter_params_exit_non_zero_with_a_clear_message(
    dataset, tmp_path, capsys, filter_yaml, words
):
    code, err = _cli(tmp_path, dataset, filter_yaml, capsys)
    assert code != 0
    for word in words:
        assert word in err
    assert not (tmp_path / "data" / "scenarios.parquet").exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ({"tokens": ["0011223344556677"]}, ["list of strings", "dict"]),
        (["0011223344556677", 5], ["list of strings", "int"]),
        ([], ["empty"]),
        (["0011223344556677", "zz11223344556677"], ["'zz11223344556677' is not a token"]),
        ("not json", ["not valid JSON"]),
    ],
)
def test_bad_token_set_file_exits_non_zero(dataset, tmp_path, capsys, content, words):
    path = tmp_path / "tokens.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    flt = {"token_set_path": str(path), "fraction_in_token_set_threshold": 0.5}
    code, err = _cli(tmp_path, dataset, flt, capsys)
    assert code != 0
    for word in words:
        assert word in err


def test_empty_selection_names_the_filter_that_removed_everything(dataset, tmp_path, capsys):
    code, err = _cli(tmp_path, dataset, {"scenario_types": ["traversing_pickup_dropoff"]}, capsys)
    assert code != 0 and "filter.scenario_types removed the last" in err
    code, err = _cli(tmp_path, dataset, {"log_names": ["2020.01.01.00.00.00_veh-1_0_1"]}, capsys)
    assert code != 0 and "filter.log_names names no log" in err
    code, err = _cli(tmp_path, dataset, {"map_names": ["sg-one-north"]}, capsys)
    assert code != 0 and "filter.map_names" in err and "removed every log" in err
    code, err = _cli(tmp_path, dataset, {"ego_displacement_minimum_m": 1e6}, capsys)
    assert code != 0 and "filter.ego_displacement_minimum_m removed the last" in err


def test_cli_select_writes_the_outputs(dataset, tmp_path, capsys):
    code, _ = _cli(tmp_path, dataset, {"limit_total_scenarios": 25}, capsys)
    assert code == 0
    table = read_scenarios(tmp_path / "data" / "scenarios.parquet")
    summary = json.loads((tmp_path / "data" / "scenarios_summary.json").read_text())
    assert table.num_rows == summary["num_scenarios"] == 25


def test_logs_without_usable_scenes_are_a_data_error(tmp_path):
    tables = {log_name(0): make_log_tables(log_name(0), num_scenes=4, frames_per_scene=5)}
    ds = write_dataset(tmp_path, tables)
    with pytest.raises(DataError, match="at least 5 scenes"):
        select_scenarios(ds.paths, resolve_filter(FilterParams()), SEQUENTIAL)


@pytest.mark.slow
def test_ray_workers_give_identical_results(dataset):
    flt = resolve_filter(
        FilterParams(limit_total_scenarios=0.4, shuffle=True, ego_displacement_minimum_m=1.0)
    )
    a = select_scenarios(dataset.paths, flt, SEQUENTIAL)
    b = select_scenarios(dataset.paths, flt, WorkerParams(kind="ray", num_workers=2))
    assert a.summary == b.summary
    assert np.array_equal(a.table.token, b.table.token)
    assert np.array_equal(a.table.log, b.table.log)


def test_log_paths_stay_relative_through_a_linked_split_folder(dataset, tmp_path):
    root = tmp_path / "root"
    (root / "nuplan-v1.1" / "splits").mkdir(parents=True)
    os.symlink(dataset.paths.logs_dir, root / "nuplan-v1.1" / "splits" / "mini")
    linked = DatasetPaths(root, root / "nuplan-v1.1" / "splits" / "mini", root / "maps", False)
    sel = select_scenarios(
        linked, resolve_filter(FilterParams(log_names=[log_name(2)])), SEQUENTIAL
    )
    assert set(sel.table.logs.rel_path) == {f"nuplan-v1.1/splits/mini/{log_name(2)}.db"}
