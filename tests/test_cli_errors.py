"""Bad input on the command line: one clear message on stderr, exit 2, no traceback."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest


def _cli(*args: str, traceback: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pluto_dvc.cli", *(["--traceback"] if traceback else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _assert_one_message(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


@pytest.fixture()
def db_copy(tiny_synthetic, tmp_path):
    src = tiny_synthetic.log_paths()[0]
    dst = tmp_path / src.name
    shutil.copy2(src, dst)
    return dst


def test_log_info_works_on_a_good_log(db_copy):
    proc = _cli("log-info", str(db_copy))
    assert proc.returncode == 0, proc.stderr
    assert db_copy.stem in proc.stdout and "scenario candidates" in proc.stdout


def test_missing_db(tmp_path):
    _assert_one_message(_cli("log-info", str(tmp_path / "nope.db")), "nope.db", "NUPLAN_DATA_ROOT")


def test_truncated_db(db_copy):
    data = db_copy.read_bytes()
    db_copy.write_bytes(data[: len(data) // 3])
    _assert_one_message(_cli("log-info", str(db_copy)), db_copy.name, "truncated")


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("DROP TABLE lidar_box", ["lidar_box"]),
        ("ALTER TABLE scene DROP COLUMN roadblock_ids", ["scene", "roadblock_ids"]),
        ("UPDATE log SET map_version = 'mars'", ["mars", "us-nv-las-vegas-strip"]),
    ],
)
def test_db_without_a_required_piece(db_copy, sql, words):
    con = sqlite3.connect(db_copy)
    con.execute(sql)
    con.commit()
    con.close()
    _assert_one_message(_cli("log-info", str(db_copy)), db_copy.name, *words)


def test_traceback_on_request(tmp_path):
    proc = _cli("log-info", str(tmp_path / "nope.db"), traceback=True)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


@pytest.fixture()
def maps_copy(tiny_synthetic, tmp_path):
    dst = tmp_path / "maps"
    shutil.copytree(tiny_synthetic.maps_root, dst)
    return dst


def test_map_info_works(maps_copy):
    proc = _cli("map-info", str(maps_copy), "sg-one-north")
    assert proc.returncode == 0, proc.stderr
    assert "lanes:" in proc.stdout


def test_maps_root_without_version_json(maps_copy):
    (maps_copy / "nuplan-maps-v1.0.json").unlink()
    _assert_one_message(_cli("map-info", str(maps_copy), "sg-one-north"), "nuplan-maps-v1.0.json")


def test_maps_root_without_a_gpkg(maps_copy):
    gpkg = next(maps_copy.glob("us-ma-boston/*/map.gpkg"))
    gpkg.unlink()
    _assert_one_message(
        _cli("map-info", str(maps_copy), "sg-one-north"), "us-ma-boston", "map.gpkg"
    )


def test_unknown_map_location(maps_copy):
    _assert_one_message(_cli("map-info", str(maps_copy), "mars"), "mars", "sg-one-north")
