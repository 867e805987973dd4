"""nuPlan log DB: schema, writer, reader round trip, and a clear DataError for every bad input."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from log_factory import DEFAULT_LOG_NAME, EXTRA_LIDAR, frame_rows, make_log_tables

from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.log_reader import load_log, read_log_meta
from pluto_dvc.nuplan.log_schema import (
    CATEGORY_NAMES,
    SCHEMA,
    TRAFFIC_LIGHT_STATUS_CODES,
    TokenFormatError,
    hex_to_token,
    make_tokens,
    token_keys,
    token_list,
    token_to_hex,
    tokens_hex,
)
from pluto_dvc.nuplan.log_writer import write_log_db


@pytest.fixture(scope="module")
def tables() -> dict:
    return make_log_tables()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tables: dict) -> Path:
    path = tmp_path_factory.mktemp("logs") / f"{DEFAULT_LOG_NAME}.db"
    write_log_db(path, tables)
    return path


@pytest.fixture(scope="module")
def log(db: Path):
    return load_log(db)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def _modified_db(tmp_path: Path, db: Path, *statements: str) -> Path:
    """A copy of ``db`` with SQL statements applied."""
    path = tmp_path / db.name
    path.write_bytes(db.read_bytes())
    con = _connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()
    return path


# ------------------------------------------------------------------------------------- schema


def test_written_schema_equals_log_schema_table_by_table(db: Path):
    con = _connect(db)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == set(SCHEMA)
    assert len(SCHEMA) == 12
    for table in SCHEMA.values():
        info = con.execute(f"PRAGMA table_info({table.name})").fetchall()
        got = [(r[1], r[2], bool(r[3]), r[5]) for r in info]  # name, type, notnull, pk
        want = [(c.name, c.sql_type, not c.nullable, int(c.name == "token")) for c in table.columns]
        assert got == want, table.name
        indexed = {
            con.execute(f"PRAGMA index_info({r[1]})").fetchone()[2]
            for r in con.execute(f"PRAGMA index_list({table.name})")
            if r[1].startswith("ix_")
        }
        assert indexed == set(table.indexes), table.name
        fks = {(r[3], r[2]) for r in con.execute(f"PRAGMA foreign_key_list({table.name})")}
        assert fks == {(c.name, c.references) for c in table.columns if c.references}
    # tables the caller did not give are created empty
    assert con.execute("SELECT count(*) FROM camera").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM image").fetchone() == (0,)


def test_schema_facts():
    assert SCHEMA["lidar_box"].column("lidar_pc_token").sql_type == "BLOB"
    assert SCHEMA["lidar_pc"].column("timestamp").sql_type == "INTEGER"
    assert SCHEMA["ego_pose"].column("qw").sql_type == "FLOAT"
    assert SCHEMA["traffic_light_status"].column("status").sql_type == "VARCHAR(8)"
    assert SCHEMA["lidar_pc"].column("filename").sql_type == "VARCHAR(128)"
    assert SCHEMA["camera"].column_names == (
        "token",
        "log_token",
        "channel",
        "model",
        "translation",
        "rotation",
        "intrinsic",
        "distortion",
        "width",
        "height",
    )
    assert SCHEMA["image"].column_names == (
        "token",
        "next_token",
        "prev_token",
        "ego_pose_token",
        "camera_token",
        "filename_jpg",
        "timestamp",
    )
    for table in SCHEMA.values():
        assert table.columns[0].name == "token"
        assert all(c.sql_type == "BLOB" for c in table.token_columns)


def test_every_token_is_an_8_byte_blob(db: Path):
    con = _connect(db)
    checked = 0
    for table in SCHEMA.values():
        for column in table.token_columns:
            kinds = set(
                con.execute(
                    f"SELECT DISTINCT typeof({column.name}), length({column.name}) "
                    f"FROM {table.name}"
                )
            )
            allowed = {("blob", 8)} | ({("null", None)} if column.nullable else set())
            assert kinds <= allowed, (table.name, column.name, kinds)
            checked += bool(kinds)
    assert checked > 20


def test_foreign_keys_resolve(db: Path, tables: dict):
    con = _connect(db)
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    # and the check can fail: the references are real, not vacuous
    joined = con.execute(
        "SELECT count(*) FROM lidar_box b JOIN lidar_pc p ON b.lidar_pc_token = p.token "
        "JOIN track t ON b.track_token = t.token JOIN category c ON t.category_token = c.token"
    ).fetchone()[0]
    assert joined == len(tables["lidar_box"]["token"])
    con.close()


def test_foreign_key_check_can_fail(tmp_path: Path, db: Path):
    path = _modified_db(
        tmp_path, db, "UPDATE lidar_box SET track_token = x'0000000000000001' WHERE rowid = 1"
    )
    assert [r[0] for r in _connect(path).execute("PRAGMA foreign_key_check")] == ["lidar_box"]


# ---------------------------------------------------------------------------------- round trip


def test_meta_round_trip(db: Path, log):
    meta = read_log_meta(db)
    assert meta == log.meta
    assert meta.log_name == DEFAULT_LOG_NAME
    assert meta.location == "us-nv-las-vegas-strip"
    assert meta.vehicle_name == "veh-35"
    assert meta.timestamp == 1_626_468_329_000_000
    assert len(meta.token) == 8


def test_clock_is_merged_lidar_in_time_order(log, tables: dict):
    rows = frame_rows(tables)
    pc = tables["lidar_pc"]
    assert log.num_frames == 140
    assert token_list(log.clock.token) == [pc["token"][r] for r in rows]
    assert log.clock.timestamp_us.tolist() == [pc["timestamp"][r] for r in rows]
    assert np.all(np.diff(log.clock.timestamp_us) == 50_000)
    assert log.clock.ego_index.tolist() == list(range(140))
    # frame i is in scene i // 20, and scenes are ordered by name scene-0000 .. scene-0006
    assert log.clock.scene_index.tolist() == [i // 20 for i in range(140)]


def test_ego_round_trip_with_heading_from_quaternion(log, tables: dict):
    ego, pc = tables["ego_pose"], tables["lidar_pc"]
    row_of = {t: r for r, t in enumerate(ego["token"])}
    rows = [row_of[pc["ego_pose_token"][r]] for r in frame_rows(tables)]
    assert rows == [2 * i for i in range(140)]
    np.testing.assert_array_equal(log.ego.x, [ego["x"][r] for r in rows])
    np.testing.assert_array_equal(log.ego.y, [ego["y"][r] for r in rows])
    np.testing.assert_array_equal(log.ego.vx, [ego["vx"][r] for r in rows])
    np.testing.assert_array_equal(log.ego.vy, [ego["vy"][r] for r in rows])
    np.testing.assert_array_equal(log.ego.ay, [ego["acceleration_y"][r] for r in rows])
    np.testing.assert_array_equal(log.ego.yaw_rate, np.full(140, 0.8))
    heading = [math.atan2(math.sin(1.0 + 0.04 * i), math.cos(1.0 + 0.04 * i)) for i in range(140)]
    np.testing.assert_allclose(log.ego.heading, heading, atol=1e-12)
    assert log.ego.heading.min() < -3.0 and log.ego.heading.max() > 3.0  # wraps through pi


def test_boxes_round_trip_with_csr_slicing(log, tables: dict):
    box, track, cat = tables["lidar_box"], tables["track"], tables["category"]
    cat_name = dict(zip(cat["token"], cat["name"], strict=True))
    track_cat = {
        t: cat_name[c] for t, c in zip(track["token"], track["category_token"], strict=True)
    }
    frame_of = {tables["lidar_pc"]["token"][r]: i for i, r in enumerate(frame_rows(tables))}
    expected: dict[int, list[tuple]] = {i: [] for i in range(140)}
    for b, pc_token in enumerate(box["lidar_pc_token"]):
        if pc_token in frame_of:  # boxes of the extra lidar are not frames
            expected[frame_of[pc_token]].append(b)
    tr = log.tracks
    assert token_list(tr.track_tokens) == track["token"]
    assert len(tr) == sum(map(len, expected.values())) < len(box["token"])
    assert tr.rows(0) == slice(0, 0)  # frame 0 has no box
    for i in range(140):
        rows = tr.rows(i)
        want = expected[i]
        assert rows.stop - rows.start == len(want)
        assert [track["token"][k] for k in tr.track_index[rows]] == [
            box["track_token"][b] for b in want
        ]
        assert [CATEGORY_NAMES[c] for c in tr.category[rows]] == [
            track_cat[box["track_token"][b]] for b in want
        ]
        for field, column in (("x", "x"), ("y", "y"), ("heading", "yaw"), ("width", "width")):
            np.testing.assert_array_equal(getattr(tr, field)[rows], [box[column][b] for b in want])
        np.testing.assert_array_equal(tr.vy[rows], [box["vy"][b] for b in want])
    assert set(tr.category.tolist()) == set(range(7))


def test_traffic_lights_tags_and_scenes_round_trip(log, tables: dict):
    tl = log.traffic_lights
    for i in (0, 1, 77, 139):
        rows = tl.rows(i)
        assert tl.lane_connector_id[rows].tolist() == [5000, 5001, 5002]  # sorted by id
        assert tl.status[rows].tolist() == [(i + j) % 4 for j in range(3)]
    assert TRAFFIC_LIGHT_STATUS_CODES == {"green": 0, "yellow": 1, "red": 2, "unknown": 3}
    assert 4000 not in tl.lane_connector_id  # the extra lidar's lights are not frames

    tags = log.tags
    frame10 = tags.type[tags.frame_index == 10].tolist()
    assert frame10 == ["high_magnitude_speed", "stationary_in_traffic"]
    assert tags.type[tags.frame_index == 15].tolist() == [
        "changing_lane",
        "near_multiple_vehicles",
        "starting_left_turn",
    ]
    assert len(tags) == 14 * 6
    assert "on_pickup_dropoff" not in tags.type

    sc, ego = log.scenes, tables["ego_pose"]
    assert sc.name.tolist() == [f"scene-{s:04d}" for s in range(7)]
    assert token_list(sc.token) == list(reversed(tables["scene"]["token"]))
    assert math.isnan(sc.goal_x[1]) and math.isnan(sc.goal_heading[1])  # NULL goal
    for s in (0, 2, 6):
        pose = 2 * (20 * (s + 1) - 1) - 1
        assert sc.goal_x[s] == ego["x"][pose] and sc.goal_y[s] == ego["y"][pose]
        h = math.atan2(ego["qz"][pose] * ego["qw"][pose] * 2, 1 - 2 * ego["qz"][pose] ** 2)
        assert sc.goal_heading[s] == pytest.approx(h, abs=1e-12)
    assert sc.roadblocks(0).tolist() == [10_000]
    assert sc.roadblocks(2).tolist() == [10_200, 10_201, 10_202]
    assert sc.roadblocks(4).tolist() == [10_400, 10_401]


def test_reader_tolerates_real_column_set_extras_and_nulls(tmp_path: Path, db: Path):
    path = _modified_db(
        tmp_path,
        db,
        "ALTER TABLE lidar_box ADD COLUMN extra_col INTEGER",
        "CREATE TABLE lidar_pc_extra (token BLOB)",
        "UPDATE lidar_box SET z = NULL, height = NULL",
        "UPDATE lidar SET translation = x'80049500', rotation = x'deadbeef'",  # never read
        "UPDATE scene SET roadblock_ids = NULL WHERE name = 'scene-0003'",
    )
    log = load_log(path)
    assert log.num_boxes > 0 and np.isnan(log.tracks.height).all()
    assert log.scenes.roadblocks(3).tolist() == []


def test_log_arrays_validate_catches_inconsistency(log):
    log.validate()
    bad = log.ego.x
    try:
        log.ego.x = bad[:-1]
        with pytest.raises(ValueError, match="EgoStates: x has shape"):
            log.validate()
    finally:
        log.ego.x = bad


# ------------------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.db"
    for reader in (load_log, read_log_meta):
        with pytest.raises(DataError, match="does not exist") as info:
            reader(missing)
        assert str(missing) in str(info.value) and "NUPLAN_DATA_ROOT" in str(info.value)
        assert "data.nuplan_root" in str(info.value)


def test_truncated_file(tmp_path: Path, db: Path):
    path = tmp_path / db.name
    data = db.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for reader in (load_log, read_log_meta):
        with pytest.raises(DataError, match="corrupt or truncated") as info:
            reader(path)
        assert "truncated" in str(info.value) and "re-download" in str(info.value)


def test_corrupt_pages(tmp_path: Path, db: Path):
    path = tmp_path / db.name
    data = bytearray(db.read_bytes())
    rng = np.random.default_rng(0)
    data[4096:] = rng.integers(0, 256, len(data) - 4096, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_log(path)


@pytest.mark.parametrize("content", [b"this is not a database\n" * 50, b""])
def test_not_an_sqlite_file(tmp_path: Path, content: bytes):
    path = tmp_path / "text.db"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not an SQLite database") as info:
        load_log(path)
    assert "corrupt or truncated" in str(info.value)


def test_missing_table(tmp_path: Path, db: Path):
    path = _modified_db(tmp_path, db, "DROP TABLE scenario_tag")
    with pytest.raises(DataError, match=r"missing tables \['scenario_tag'\]"):
        load_log(path)
    assert read_log_meta(path).log_name == DEFAULT_LOG_NAME  # meta needs only the log table


def test_missing_column(tmp_path: Path, db: Path):
    path = _modified_db(tmp_path, db, "ALTER TABLE lidar_box DROP COLUMN yaw")
    with pytest.raises(DataError, match=r"missing columns \['lidar_box.yaw'\]"):
        load_log(path)


def test_no_merged_point_cloud_lidar(tmp_path: Path):
    tables = make_log_tables()
    tables["lidar"]["channel"] = ["LidarFront", EXTRA_LIDAR]
    path = tmp_path / "no_merged.db"
    write_log_db(path, tables)
    with pytest.raises(DataError, match="MergedPointCloud") as info:
        load_log(path)
    assert "LidarFront" in str(info.value)


def test_unknown_map_location(tmp_path: Path):
    tables = make_log_tables(location="us-ca-nowhere")
    path = tmp_path / "nowhere.db"
    write_log_db(path, tables)
    for reader in (load_log, read_log_meta):
        with pytest.raises(DataError, match="us-ca-nowhere") as info:
            reader(path)
        assert all(name in str(info.value) for name in LOCATIONS)


def test_dangling_reference_and_malformed_token(tmp_path: Path, db: Path):
    path = _modified_db(
        tmp_path, db, "UPDATE lidar_box SET track_token = x'0102030405060708' WHERE rowid = 3"
    )
    with pytest.raises(
        DataError, match="1 lidar_box.track_token values not found in table 'track'"
    ):
        load_log(path)
    path.unlink()
    path = _modified_db(tmp_path, db, "UPDATE scenario_tag SET lidar_pc_token = 'abc'")
    with pytest.raises(DataError, match="scenario_tag.lidar_pc_token holds .* not 8-byte BLOBs"):
        load_log(path)


def test_unknown_category_and_traffic_light_status(tmp_path: Path, db: Path):
    path = _modified_db(tmp_path, db, "UPDATE category SET name = 'car' WHERE name = 'vehicle'")
    with pytest.raises(DataError, match=r"unknown category names \['car'\]"):
        load_log(path)
    path.unlink()
    path = _modified_db(tmp_path, db, "UPDATE traffic_light_status SET status = 'blue'")
    with pytest.raises(DataError, match=r"unknown traffic_light_status.status values \['blue'\]"):
        load_log(path)


# ---------------------------------------------------------------------------------- writer


def test_writer_rejects_bad_tables(tmp_path: Path):
    path = tmp_path / "bad.db"
    good = make_log_tables(num_scenes=5, frames_per_scene=4, num_tracks=2)
    cases = [
        ({"lidar_boxes": {}}, "unknown nuPlan table 'lidar_boxes'"),
        ({"log": {**good["log"], "colour": ["red"]}}, r"unknown columns \['colour'\]"),
        (
            {"log": {k: v for k, v in good["log"].items() if k != "date"}},
            r"missing columns \['date'\]",
        ),
        ({"log": {**good["log"], "date": ["a", "b"]}}, "unequal lengths"),
        (
            {"category": {**good["category"], "token": [b"1234567"] * 7}},
            "'category' column 'token': row 0 is b'1234567'",
        ),
        (
            {"track": {**good["track"], "category_token": [None] * 2}},
            "'track' column 'category_token': row 0 is None but the column is NOT NULL",
        ),
    ]
    for tables, words in cases:
        with pytest.raises(ValueError, match=words):
            write_log_db(path, tables)
        assert not path.exists()
    assert os.listdir(tmp_path) == []  # no temp file left behind


def test_writer_is_atomic_and_accepts_numpy_columns(tmp_path: Path):
    path = tmp_path / "log.db"
    tables = make_log_tables(num_scenes=5, frames_per_scene=4, num_tracks=2)
    write_log_db(path, tables)
    before = path.read_bytes()
    broken = {**tables, "scene": {**tables["scene"], "token": [b"x"] * 5}}
    with pytest.raises(ValueError):
        write_log_db(path, broken)
    assert path.read_bytes() == before  # a failed write leaves the old file intact
    # numpy columns: 'S8' tokens with trailing zero bytes survive, numpy scalars are converted
    tokens = np.array([b"\x01" + bytes(7), b"\x02\x00\x00\x00\x00\x00\x00\x03"], dtype="S8")
    cat = {"token": tokens, "name": np.array(["vehicle", "bicycle"]), "description": ["a", "b"]}
    tables["category"] = cat
    tables["track"]["category_token"] = [token_list(tokens)[0]] * 2
    write_log_db(path, tables)
    con = _connect(path)
    assert [r[0] for r in con.execute("SELECT token FROM category")] == token_list(tokens)
    assert os.listdir(tmp_path) == ["log.db"]
    assert load_log(path).tracks.category.tolist().count(0) > 0


# ---------------------------------------------------------------------------------- tokens


def test_token_helpers():
    token = bytes.fromhex("00ff10a0b1c2d3e4")
    assert token_to_hex(token) == "00ff10a0b1c2d3e4"
    assert hex_to_token("00FF10A0B1C2D3E4") == token
    for bad in (
        "00ff10a0b1c2d3e",
        "00ff10a0b1c2d3e4f",
        "zzff10a0b1c2d3e4",
        12,
        "",
        " 0ff10a0b1c2d3e4",
    ):
        with pytest.raises(TokenFormatError, match="16 hex characters"):
            hex_to_token(bad)  # type: ignore[arg-type]
    assert issubclass(TokenFormatError, ValueError)
    with pytest.raises(ValueError):
        token_to_hex(b"123")

    a = make_tokens("log-a", "lidar_pc", 1000)
    assert a.dtype == np.dtype("S8") and len(set(token_list(a))) == 1000
    np.testing.assert_array_equal(a, make_tokens("log-a", "lidar_pc", 1000))
    np.testing.assert_array_equal(a[500:], make_tokens("log-a", "lidar_pc", 500, start=500))
    assert not set(token_list(a)) & set(token_list(make_tokens("log-a", "lidar_box", 1000)))
    assert not set(token_list(a)) & set(token_list(make_tokens("log-b", "lidar_pc", 1000)))

    padded = np.array([b"\x01" + bytes(7), b"\xff" * 8], dtype="S8")
    assert token_list(padded) == [b"\x01" + bytes(7), b"\xff" * 8]
    assert tokens_hex(padded).tolist() == ["0100000000000000", "ffffffffffffffff"]
    assert token_keys(padded).tolist() == [1 << 56, 2**64 - 1]


@pytest.mark.parametrize("value", ["NULL", "1e300", "9e999", "-9e999"])
@pytest.mark.parametrize(("table", "column"), [("ego_pose", "x"), ("lidar_box", "vx")])
def test_non_finite_or_absurd_numbers_are_refused_naming_table_column_and_rows(
    tmp_path: Path, db: Path, table: str, column: str, value: str
):
    """NULL, inf and 1e300 (inf once cast to float32) would reach the features as NaN."""
    path = _modified_db(tmp_path, db, f"UPDATE {table} SET {column} = {value} WHERE rowid % 7 = 0")
    con = _connect(path)
    read = (  # the reader reads the ego poses of frames and scene goals only
        " AND (token IN (SELECT ego_pose_token FROM lidar_pc)"
        " OR token IN (SELECT goal_ego_pose_token FROM scene))"
        if table == "ego_pose"
        else ""
    )
    (bad,) = con.execute(f"SELECT count(*) FROM {table} WHERE rowid % 7 = 0{read}").fetchone()
    con.close()
    with pytest.raises(DataError) as info:
        load_log(path)
    text = str(info.value)
    assert f"{table}.{column}" in text and f"{bad} rows" in text and str(path) in text
    assert "finite" in text
