"""The log-level split: no log in two parts, lists or seeded ratios, types balanced, clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluto_dvc.cli import main
from pluto_dvc.errors import ParamsError
from pluto_dvc.params import SplitParams, parse_params
from pluto_dvc.reference import official_log_split
from pluto_dvc.splitting import PARTS, LogStats, part_sizes, run_split, split_logs


def stats_of(logs: dict[str, dict[str, int]]) -> LogStats:
    names, types = [], []
    for log, counts in logs.items():
        for typ, n in counts.items():
            names += [log] * n
            types += [typ] * n
    return LogStats.from_columns(np.array(names), np.array(types))


def random_logs(num_logs: int, seed: int = 0) -> dict[str, dict[str, int]]:
    """Logs with common types everywhere and a few rare types in 3-4 logs each."""
    rng = np.random.default_rng(seed)
    logs = {}
    for i in range(num_logs):
        counts = {"unknown": int(rng.integers(5, 50)), "changing_lane": int(rng.integers(1, 9))}
        logs[f"2021.06.{i:02d}.10.00.00_veh-1_0_{i}"] = counts
    names = sorted(logs)
    for k, rare in enumerate(["starting_u_turn", "behind_bike", "on_carpark"]):
        for name in rng.choice(names, size=3 + k % 2, replace=False):
            logs[str(name)][rare] = 1
    return logs


def assert_partition(split, names):
    seen = [g for p in PARTS for g in split.parts[p]]
    assert len(seen) == len(set(seen))  # no log in two parts
    assert set(seen) | set(split.unassigned) == set(names)
    assert not set(seen) & set(split.unassigned)


def test_stats_count_scenarios_per_log_and_type():
    stats = stats_of({"b": {"x": 2, "unknown": 1}, "a": {"x": 1}})
    assert stats.names == ["a", "b"]
    assert stats.counts == {"a": {"x": 1}, "b": {"unknown": 1, "x": 2}}


@pytest.mark.parametrize(("num_logs", "sizes"), [(20, (14, 3, 3)), (3, (1, 1, 1)), (7, (5, 1, 1))])
def test_part_sizes_follow_the_ratios_with_one_log_at_least(num_logs, sizes):
    got = part_sizes(num_logs, {"train": 0.7, "val": 0.15, "test": 0.15})
    assert tuple(got[p] for p in PARTS) == sizes
    assert sum(got.values()) == num_logs


def test_ratio_split_is_seeded_and_balanced():
    logs = random_logs(20)
    stats = stats_of(logs)
    a = split_logs(stats, SplitParams(seed=1))
    b = split_logs(stats, SplitParams(seed=1))
    c = split_logs(stats, SplitParams(seed=2))
    assert a.parts == b.parts and a.parts != c.parts
    assert_partition(a, logs)
    assert [len(a.parts[p]) for p in PARTS] == [14, 3, 3]
    for part in PARTS:
        types = {t for g in a.parts[part] for t in logs[g]}
        # every rare type sits in 3 or 4 logs: each part gets each type
        assert types == {"unknown", "changing_lane", "starting_u_turn", "behind_bike", "on_carpark"}


def test_unbalanced_split_can_miss_rare_types_that_balancing_places():
    logs = random_logs(20)
    stats = stats_of(logs)
    missing_any = False
    for seed in range(10):
        plain = split_logs(stats, SplitParams(seed=seed, balance_types=False))
        assert_partition(plain, logs)
        for part in ("val", "test"):
            types = {t for g in plain.parts[part] for t in logs[g]}
            missing_any |= "starting_u_turn" not in types
        balanced = split_logs(stats, SplitParams(seed=seed))
        for part in PARTS:
            assert "starting_u_turn" in {t for g in balanced.parts[part] for t in logs[g]}
    assert missing_any  # balancing is what guarantees it


def test_explicit_lists_assign_listed_logs_and_leave_others_out(tmp_path):
    logs = random_logs(9)
    names = sorted(logs)
    (tmp_path / "train.txt").write_text("\n".join(names[:5]) + "\n# comment\n\n")
    (tmp_path / "val.txt").write_text(f"{names[5]}.db\n{names[6]}\nsome_other_log\n")
    (tmp_path / "test.txt").write_text(names[7] + "\n")
    split = split_logs(stats_of(logs), SplitParams(log_lists=str(tmp_path)))
    assert split.parts == {"train": names[:5], "val": names[5:7], "test": [names[7]]}
    assert split.unassigned == [names[8]]
    assert_partition(split, names)


def test_a_log_in_two_lists_is_refused(tmp_path):
    (tmp_path / "train.txt").write_text("log_a\n")
    (tmp_path / "val.txt").write_text("log_c\n")
    (tmp_path / "test.txt").write_text("log_b\nlog_a\n")
    with pytest.raises(ParamsError, match="log_a is in both the train and the test list"):
        split_logs(
            stats_of({"log_a": {"x": 1}, "log_b": {"x": 1}}), SplitParams(log_lists=str(tmp_path))
        )


def test_official_nuplan_lists():
    train, val, test = (official_log_split(p) for p in PARTS)
    logs = {train[0]: {"x": 1}, train[5]: {"x": 2}, val[3]: {"x": 1}, test[7]: {"y": 1}}
    split = split_logs(stats_of(logs), SplitParams(log_lists="nuplan"))
    assert split.parts == {
        "train": sorted([train[0], train[5]]),
        "val": [val[3]],
        "test": [test[7]],
    }
    assert split.method == "nuplan"


def test_empty_part_is_refused_with_reason_and_fix():
    with pytest.raises(ParamsError, match=r"only 2 log\(s\).*at least 3.*synthetic.num_logs"):
        split_logs(stats_of({"a": {"x": 1}, "b": {"x": 1}}), SplitParams())
    with pytest.raises(
        ParamsError, match=r"none of the 2 selected logs is in the train list.*log_lists: ''"
    ):
        split_logs(stats_of({"a": {"x": 1}, "b": {"x": 1}}), SplitParams(log_lists="nuplan"))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"test": 0.0, "train": 0.85}, ["split.test is 0", "leaves that part empty"]),
        ({"train": 0.5}, ["must be 1", "0.8"]),
        ({"val": -0.1}, ["split.val"]),
    ],
)
def test_bad_split_params(raw, words):
    with pytest.raises(ParamsError) as exc:
        parse_params({"split": raw})
    for word in words:
        assert word in str(exc.value)


def _write_scenarios(path: Path, logs: dict[str, dict[str, int]]) -> None:
    names, types = [], []
    for log, counts in logs.items():
        for typ, n in counts.items():
            names += [log] * n
            types += [typ] * n
    n = len(names)
    table = pa.table(
        {
            "log_name": names,
            "token": [f"{i:016x}" for i in range(n)],
            "scenario_type": types,
            "timestamp_us": list(range(n)),
            "map_name": ["us-nv-las-vegas-strip"] * n,
            "log_path": [f"nuplan-v1.1/splits/mini/{g}.db" for g in names],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_run_split_writes_splits_and_summary(tmp_path):
    logs = random_logs(12)
    _write_scenarios(tmp_path / "scenarios.parquet", logs)
    split, summary = run_split(
        SplitParams(seed=3),
        tmp_path / "scenarios.parquet",
        tmp_path / "s.json",
        tmp_path / "m.json",
    )
    written = json.loads((tmp_path / "s.json").read_text())
    assert written == split.to_json() and list(written) == list(PARTS)
    assert json.loads((tmp_path / "m.json").read_text()) == summary
    for part in PARTS:
        expected = sum(sum(logs[g].values()) for g in written[part])
        assert summary["num_scenarios"][part] == expected
        assert summary["num_logs"][part] == len(written[part])
        present = {t for g in written[part] for t in logs[g]}
        all_types = {t for c in logs.values() for t in c}
        assert summary["missing_types"][part] == sorted(all_types - present)
    assert sum(summary["num_scenarios"].values()) == sum(sum(c.values()) for c in logs.values())
    again, _ = run_split(
        SplitParams(seed=3),
        tmp_path / "scenarios.parquet",
        tmp_path / "t.json",
        tmp_path / "n.json",
    )
    assert (tmp_path / "s.json").read_bytes() == (tmp_path / "t.json").read_bytes()


def test_cli_split_refuses_an_empty_part_with_exit_code(tmp_path, capsys):
    _write_scenarios(tmp_path / "data" / "scenarios.parquet", {"a": {"x": 1}, "b": {"y": 2}})
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        code = main(["split"])  # no params.yaml here: the defaults
    finally:
        os.chdir(cwd)
    assert code != 0
    assert "would leave" in capsys.readouterr().err
    assert not (tmp_path / "data" / "splits.json").exists()
