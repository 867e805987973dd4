"""Read one nuPlan log database into typed arrays: one query per table, joins in numpy.

``load_log(path)`` returns a :class:`LogArrays`; ``read_log_meta(path)`` reads only the ``log``
table (cheap, for enumerating thousands of logs). Only the lidar whose channel is
``MergedPointCloud`` is used; the pickled ``translation`` / ``rotation`` columns are never read.
Every problem with the file raises :class:`DataError` saying what is wrong and how to fix it,
including a NULL, NaN, infinite or absurd number in a column the features use (``FINITE_COLUMNS``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pluto_dvc.errors import DataError
from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.log_records import (
    EgoStates,
    LidarClock,
    LogArrays,
    LogMeta,
    ScenarioTags,
    Scenes,
    TrackedObjects,
    TrafficLights,
)
from pluto_dvc.nuplan.log_schema import (
    CATEGORY_CODES,
    MERGED_POINT_CLOUD,
    TOKEN_BYTES,
    TRAFFIC_LIGHT_STATUS_CODES,
    token_keys,
    tokens_hex,
)

# The columns the reader needs; any other table or column may exist or not.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "log": ("token", "vehicle_name", "date", "timestamp", "logfile", "map_version"),
    "lidar": ("token", "channel"),
    "lidar_pc": ("token", "ego_pose_token", "lidar_token", "scene_token", "timestamp"),
    "ego_pose": (
        *("token", "x", "y", "qw", "qx", "qy", "qz", "vx", "vy"),
        *("acceleration_x", "acceleration_y", "angular_rate_z"),
    ),
    "lidar_box": (
        *("lidar_pc_token", "track_token", "x", "y", "yaw"),
        *("width", "length", "height", "vx", "vy"),
    ),
    "track": ("token", "category_token"),
    "category": ("token", "name"),
    "scene": ("token", "name", "goal_ego_pose_token", "roadblock_ids"),
    "scenario_tag": ("lidar_pc_token", "type"),
    "traffic_light_status": ("lidar_pc_token", "lane_connector_id", "status"),
}

# Float columns the features use: each value must be a finite number of sane magnitude. NULL,
# NaN, inf or 1e300 (inf once cast to float32) would otherwise reach a sample as NaN. Other float
# columns (lidar_box.height, ...) may hold NULL, as in real logs.
FINITE_COLUMNS: dict[str, tuple[str, ...]] = {
    "ego_pose": (
        *("x", "y", "qw", "qx", "qy", "qz", "vx", "vy"),
        *("acceleration_x", "acceleration_y", "angular_rate_z"),
    ),
    "lidar_box": ("x", "y", "yaw", "width", "length", "vx", "vy"),
}
MAX_ABS_VALUE = 1e9  # metres, m/s, rad: UTM coordinates stay below 1e7

_FIX_DATA = (
    "re-download the log (real nuPlan) or regenerate the synthetic dataset (`dvc repro synthesize`)"
)
_SQLITE_MAGIC = b"SQLite format 3\x00"


def read_log_meta(path: str | Path) -> LogMeta:
    """The ``log`` row of one log DB (reads nothing else)."""
    path = Path(path)
    with _connect(path) as con:
        _require(con, path, {"log": REQUIRED_COLUMNS["log"]})
        return _read_meta(con, path)


def load_log(path: str | Path) -> LogArrays:
    """Load a whole log DB into :class:`LogArrays` (validated)."""
    path = Path(path)
    with _connect(path) as con:
        _require(con, path, REQUIRED_COLUMNS)
        return _Loader(con, path).load()


# ------------------------------------------------------------------------------- file checks


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"nuPlan log {path} {what}: the file is corrupt or truncated; {_FIX_DATA}.")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(
            f"nuPlan log {path} does not exist. Point NUPLAN_DATA_ROOT (or data.nuplan_root in "
            "params.yaml) at the nuPlan download, the folder holding nuplan-v1.1/splits/<split>/"
            "*.db, or leave both empty to use the synthetic dataset."
        )
    if not path.is_file():
        raise DataError(f"nuPlan log {path} is not a file; expected one SQLite .db per log.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise DataError(f"cannot read nuPlan log {path}: {exc}") from exc
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise _corrupt(path, f"is not an SQLite database ({size} bytes, no SQLite header)")
    # SQLite header: page size at 16 (1 means 65536), page count at 28, valid when the change
    # counter (24) equals the version-valid-for number (92).
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96] and pages * page_size > size:
        raise _corrupt(
            path, f"is truncated: its header says {pages * page_size} bytes, it has {size}"
        )


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the log read-only; turn SQLite errors into DataError."""
    _check_file(path)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"cannot open nuPlan log {path}: {exc}") from exc
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, f"cannot be read ({exc})") from exc
    finally:
        con.close()


def _require(con: sqlite3.Connection, path: Path, required: dict[str, tuple[str, ...]]) -> None:
    """Raise DataError naming every missing required table and column."""
    rows = con.execute(
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
        "WHERE m.type = 'table'"
    ).fetchall()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    missing_tables = [t for t in required if t not in present]
    missing_columns = [
        f"{t}.{c}"
        for t, cols in required.items()
        if t in present
        for c in cols
        if c not in present[t]
    ]
    if missing_tables or missing_columns:
        parts = []
        if missing_tables:
            parts.append(f"missing tables {missing_tables}")
        if missing_columns:
            parts.append(f"missing columns {missing_columns}")
        raise DataError(
            f"nuPlan log {path} is not in the nuPlan log format (nuplan-v1.1): "
            f"{'; '.join(parts)}; {_FIX_DATA}."
        )


def _read_meta(con: sqlite3.Connection, path: Path) -> LogMeta:
    rows = con.execute(
        "SELECT token, vehicle_name, date, timestamp, logfile, map_version FROM log"
    ).fetchall()
    if len(rows) != 1:
        raise DataError(
            f"nuPlan log {path}: table 'log' has {len(rows)} rows, expected exactly 1; {_FIX_DATA}."
        )
    token, vehicle, date, timestamp, logfile, location = rows[0]
    if location not in LOCATIONS:
        raise DataError(
            f"nuPlan log {path}: log.map_version is {location!r}, not one of the four nuPlan map "
            f"locations {sorted(LOCATIONS)}; the file is not a nuPlan log or is corrupt."
        )
    if type(token) is not bytes or len(token) != TOKEN_BYTES:
        raise DataError(f"nuPlan log {path}: log.token is {token!r}, not an 8-byte BLOB.")
    return LogMeta(
        log_name=path.stem,
        token=token,
        vehicle_name=str(vehicle),
        date=str(date),
        timestamp=int(timestamp) if timestamp is not None else 0,
        logfile=str(logfile),
        location=location,
        path=path,
    )


# ------------------------------------------------------------------------------------ loading


class _TokenIndex:
    """Token -> row lookup by binary search on uint64 keys."""

    def __init__(self, tokens: np.ndarray) -> None:
        keys = token_keys(tokens)
        self.order = np.argsort(keys, kind="stable")
        self.sorted = keys[self.order]

    def find(self, tokens: np.ndarray) -> np.ndarray:
        """(M,) int64 row of each token, -1 where absent."""
        if len(self.sorted) == 0:
            return np.full(len(tokens), -1, dtype=np.int64)
        keys = token_keys(tokens)
        pos = np.minimum(np.searchsorted(self.sorted, keys), len(self.sorted) - 1)
        return np.where(self.sorted[pos] == keys, self.order[pos], -1).astype(np.int64)


def _csr(sorted_frames: np.ndarray, num_frames: int) -> np.ndarray:
    """(N+1,) int64 offsets of rows already sorted by frame."""
    return np.searchsorted(sorted_frames, np.arange(num_frames + 1)).astype(np.int64)


class _Loader:
    """Reads the tables of one open log; ``load()`` assembles the records."""

    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self.con = con
        self.path = path

    # -- helpers -----------------------------------------------------------------------------

    def fail(self, message: str) -> DataError:
        return DataError(f"nuPlan log {self.path}: {message}; {_FIX_DATA}.")

    def query(self, table: str, columns: dict[str, str], where: str = "") -> np.ndarray:
        """Structured array, one field per column; kinds: 'O' (as stored), 'f8', 'i8', 'U8' and
        'S8' (a token, unchecked: used for big tables, checked when resolved)."""
        sql = f"SELECT {', '.join(columns)} FROM {table} {where}"
        dtype = np.dtype(list(columns.items()))
        try:
            values = np.fromiter(self.con.execute(sql), dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            self.require_finite(table, values, FINITE_COLUMNS.get(table, ()))
            return values
        for column, kind in columns.items():  # find the column that did not convert
            try:
                np.fromiter((r[0] for r in self.con.execute(f"SELECT {column} FROM {table}")), kind)
            except (TypeError, ValueError, OverflowError) as exc:
                what = {"i8": "integers", "f8": "numbers"}.get(kind, "text")
                raise self.fail(f"{table}.{column} must hold {what} ({exc})") from exc
        raise self.fail(f"table {table!r} cannot be read")  # pragma: no cover

    def require_finite(self, table: str, values: np.ndarray, columns: tuple[str, ...]) -> None:
        """DataError naming the first of ``columns`` with NULL, NaN, inf or absurd values."""
        for column in columns:
            if column not in values.dtype.names:
                continue
            bad = int(np.count_nonzero(~(np.abs(values[column]) <= MAX_ABS_VALUE)))
            if bad:
                raise self.fail(
                    f"{table}.{column} holds {bad} rows that are NULL, NaN, infinite or beyond "
                    f"+-{MAX_ABS_VALUE:g} (of {len(values)} rows read); every value must be a "
                    "finite number"
                )

    def tokens(self, table: str, column: str, values: np.ndarray) -> np.ndarray:
        """(M,) 'S8' from an object array of 8-byte BLOBs (checked)."""
        values = values.tolist()
        if set(map(type, values)) <= {bytes} and set(map(len, values)) <= {TOKEN_BYTES}:
            return np.frombuffer(b"".join(values), dtype="S8").copy()
        bad = next(v for v in values if type(v) is not bytes or len(v) != TOKEN_BYTES)
        raise self.fail(f"{table}.{column} holds {bad!r}; nuPlan tokens are 8-byte BLOBs")

    def nullable_tokens(
        self, table: str, column: str, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(M,) 'S8' tokens (zeros where NULL) and (M,) bool mask of the non-NULL rows."""
        valid = np.array([v is not None for v in values.tolist()], dtype=bool)
        filled = values.copy()
        filled[~valid] = bytes(TOKEN_BYTES)
        return self.tokens(table, column, filled), valid

    def resolve(
        self, index: _TokenIndex, tokens: np.ndarray, table: str, column: str, target: str
    ) -> np.ndarray:
        """Rows in ``target`` of the tokens read from ``table.column``; DataError if dangling."""
        rows = index.find(tokens)
        missing = np.flatnonzero(rows < 0)
        if len(missing) == 0:
            return rows
        (malformed,) = self.con.execute(
            f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL "
            f"AND (typeof({column}) != 'blob' OR length({column}) != {TOKEN_BYTES})"
        ).fetchone()
        if malformed:
            raise self.fail(
                f"{table}.{column} holds {malformed} values that are not 8-byte BLOBs (tokens)"
            )
        raise self.fail(
            f"{len(missing)} {table}.{column} values not found in table {target!r} "
            f"(first: {tokens_hex(tokens[missing[:1]])[0]})"
        )

    def frames_of(self, table: str, tokens: np.ndarray) -> np.ndarray:
        """(M,) int64 frame of each ``lidar_pc_token`` (-1 = a lidar_pc of another lidar)."""
        rows = self.resolve(self.pc_index, tokens, table, "lidar_pc_token", "lidar_pc")
        return self.pc_frame[rows]

    # -- tables ------------------------------------------------------------------------------

    def load(self) -> LogArrays:
        meta = _read_meta(self.con, self.path)
        self.read_frames()
        n = len(self.frame_token)
        scenes, scene_index = self.read_scenes()
        arrays = LogArrays(
            meta=meta,
            clock=LidarClock(
                token=self.frame_token,
                timestamp_us=self.frame_timestamp,
                scene_index=scene_index,
                ego_index=np.arange(n, dtype=np.int32),
            ),
            ego=self.read_ego(scenes),
            tracks=self.read_boxes(n),
            traffic_lights=self.read_traffic_lights(n),
            tags=self.read_tags(),
            scenes=scenes,
        )
        arrays.validate()
        return arrays

    def read_frames(self) -> None:
        """The clock: MergedPointCloud lidar_pc rows by timestamp, and lidar_pc -> frame maps."""
        lidar = self.query("lidar", {"token": "O", "channel": "O"})
        merged = lidar["token"][lidar["channel"] == MERGED_POINT_CLOUD]
        if len(merged) == 0:
            raise self.fail(
                f"no lidar with channel {MERGED_POINT_CLOUD!r} (channels found: "
                f"{sorted(str(c) for c in lidar['channel'])}); nuPlan scenarios are read from "
                "the merged point cloud"
            )
        merged_keys = token_keys(self.tokens("lidar", "token", merged))
        kinds = {"token": "O", "ego_pose_token": "O", "lidar_token": "O", "scene_token": "O"}
        pc = self.query("lidar_pc", kinds | {"timestamp": "i8"})
        pc_tokens = self.tokens("lidar_pc", "token", pc["token"])
        lidar_keys = token_keys(self.tokens("lidar_pc", "lidar_token", pc["lidar_token"]))
        selected = np.flatnonzero(np.isin(lidar_keys, merged_keys))
        if len(selected) == 0:
            raise self.fail(f"the {MERGED_POINT_CLOUD!r} lidar has no lidar_pc rows")
        rows = selected[np.argsort(pc["timestamp"][selected], kind="stable")]
        self.pc_index = _TokenIndex(pc_tokens)
        self.pc_frame = np.full(len(pc_tokens), -1, dtype=np.int64)
        self.pc_frame[rows] = np.arange(len(rows))
        self.frame_token = pc_tokens[rows]
        self.frame_timestamp = pc["timestamp"][rows]
        ego_tokens = self.tokens("lidar_pc", "ego_pose_token", pc["ego_pose_token"])
        self.frame_ego_token = ego_tokens[rows]
        scene_tokens, valid = self.nullable_tokens("lidar_pc", "scene_token", pc["scene_token"])
        self.frame_scene_token = scene_tokens[rows]
        self.frame_scene_valid = valid[rows]

    def read_scenes(self) -> tuple[Scenes, np.ndarray]:
        """Scenes ordered by name, and the (N,) int32 scene of each frame (-1 = none)."""
        kinds = {"token": "O", "name": "O", "goal_ego_pose_token": "O", "roadblock_ids": "O"}
        sc = self.query("scene", kinds)
        tokens = self.tokens("scene", "token", sc["token"])
        names = np.array(["" if v is None else str(v) for v in sc["name"]], dtype=str)
        order = np.argsort(names, kind="stable")
        goal_tokens, goal_valid = self.nullable_tokens(
            "scene", "goal_ego_pose_token", sc["goal_ego_pose_token"]
        )
        self.goal_token, self.goal_valid = goal_tokens[order], goal_valid[order]
        routes = ["" if v is None else str(v) for v in sc["roadblock_ids"][order]]
        counts = np.array([len(r.split()) for r in routes], dtype=np.int64)
        try:
            roadblock_ids = np.array(" ".join(routes).split(), dtype=np.int64)
        except ValueError as exc:
            raise self.fail(
                f"scene.roadblock_ids must be space-separated integer ids ({exc})"
            ) from exc
        nan = np.full(len(tokens), np.nan)
        scenes = Scenes(
            token=tokens[order],
            name=names[order],
            goal_x=nan.copy(),
            goal_y=nan.copy(),
            goal_heading=nan.copy(),
            roadblock_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            roadblock_ids=roadblock_ids.reshape(-1),
        )
        scene_index = np.full(len(self.frame_token), -1, dtype=np.int32)
        if self.frame_scene_valid.any():
            scene_index[self.frame_scene_valid] = self.resolve(
                _TokenIndex(scenes.token),
                self.frame_scene_token[self.frame_scene_valid],
                "lidar_pc",
                "scene_token",
                "scene",
            )
        return scenes, scene_index

    def read_ego(self, scenes: Scenes) -> EgoStates:
        """Ego state of every frame; fills the scenes' goal poses."""
        floats = ("x", "y", "qw", "qx", "qy", "qz", "vx", "vy")
        floats += ("acceleration_x", "acceleration_y", "angular_rate_z")
        where = (
            "WHERE token IN (SELECT ego_pose_token FROM lidar_pc) "
            "OR token IN (SELECT goal_ego_pose_token FROM scene)"
        )
        ego = self.query("ego_pose", {"token": "O"} | dict.fromkeys(floats, "f8"), where)
        tokens = self.tokens("ego_pose", "token", ego["token"])
        qw, qx, qy, qz = ego["qw"], ego["qx"], ego["qy"], ego["qz"]
        heading = np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        index = _TokenIndex(tokens)
        rows = self.resolve(index, self.frame_ego_token, "lidar_pc", "ego_pose_token", "ego_pose")
        goal = self.resolve(
            index, self.goal_token[self.goal_valid], "scene", "goal_ego_pose_token", "ego_pose"
        )
        scenes.goal_x[self.goal_valid] = ego["x"][goal]
        scenes.goal_y[self.goal_valid] = ego["y"][goal]
        scenes.goal_heading[self.goal_valid] = heading[goal]
        return EgoStates(
            token=tokens[rows],
            x=ego["x"][rows],
            y=ego["y"][rows],
            heading=heading[rows],
            vx=ego["vx"][rows],
            vy=ego["vy"][rows],
            ax=ego["acceleration_x"][rows],
            ay=ego["acceleration_y"][rows],
            yaw_rate=ego["angular_rate_z"][rows],
        )

    def read_track_categories(self) -> tuple[np.ndarray, np.ndarray]:
        """(T,) 'S8' track tokens and (T,) int8 category code of each track."""
        cat = self.query("category", {"token": "O", "name": "O"})
        codes = np.array([CATEGORY_CODES.get(n, -1) for n in cat["name"]], dtype=np.int8)
        if (codes < 0).any():
            raise self.fail(
                f"unknown category names {sorted(map(str, cat['name'][codes < 0]))} in table "
                f"'category'; nuPlan categories are {list(CATEGORY_CODES)}"
            )
        track = self.query("track", {"token": "O", "category_token": "O"})
        cat_rows = self.resolve(
            _TokenIndex(self.tokens("category", "token", cat["token"])),
            self.tokens("track", "category_token", track["category_token"]),
            "track",
            "category_token",
            "category",
        )
        return self.tokens("track", "token", track["token"]), codes[cat_rows]

    def read_boxes(self, num_frames: int) -> TrackedObjects:
        track_tokens, track_category = self.read_track_categories()
        floats = ("x", "y", "yaw", "width", "length", "height", "vx", "vy")
        kinds = {"lidar_pc_token": "S8", "track_token": "S8"} | dict.fromkeys(floats, "f8")
        box = self.query("lidar_box", kinds)
        frame = self.frames_of("lidar_box", box["lidar_pc_token"])
        track_index = self.resolve(
            _TokenIndex(track_tokens), box["track_token"], "lidar_box", "track_token", "track"
        )
        keep = np.flatnonzero(frame >= 0)
        order = keep[np.argsort(frame[keep], kind="stable")]
        box = box[order]
        return TrackedObjects(
            frame_start=_csr(frame[order], num_frames),
            track_tokens=track_tokens,
            track_index=track_index[order].astype(np.int32),
            category=track_category[track_index[order]],
            x=box["x"],
            y=box["y"],
            heading=box["yaw"],
            width=box["width"],
            length=box["length"],
            height=box["height"],
            vx=box["vx"],
            vy=box["vy"],
        )

    def read_traffic_lights(self, num_frames: int) -> TrafficLights:
        kinds = {"lidar_pc_token": "S8", "lane_connector_id": "i8", "status": "U8"}
        tl = self.query("traffic_light_status", kinds)
        frame = self.frames_of("traffic_light_status", tl["lidar_pc_token"])
        names, inverse = np.unique(tl["status"], return_inverse=True)
        codes = np.array([TRAFFIC_LIGHT_STATUS_CODES.get(n, -1) for n in names], dtype=np.int8)
        if (codes < 0).any():
            raise self.fail(
                f"unknown traffic_light_status.status values {names[codes < 0].tolist()}; "
                f"expected one of {list(TRAFFIC_LIGHT_STATUS_CODES)}"
            )
        keep = np.flatnonzero(frame >= 0)
        ids = tl["lane_connector_id"]
        order = keep[np.lexsort((ids[keep], frame[keep]))]
        return TrafficLights(
            frame_start=_csr(frame[order], num_frames),
            lane_connector_id=ids[order],
            status=codes[inverse.reshape(-1)][order],
        )

    def read_tags(self) -> ScenarioTags:
        tags = self.query("scenario_tag", {"lidar_pc_token": "S8", "type": "O"})
        frame = self.frames_of("scenario_tag", tags["lidar_pc_token"])
        types = tags["type"].tolist()
        if None in types:
            raise self.fail("scenario_tag.type holds NULL; every tag needs a scenario type")
        types = np.array(types, dtype=str).reshape(-1)
        keep = np.flatnonzero(frame >= 0)
        order = keep[np.lexsort((types[keep], frame[keep]))]
        return ScenarioTags(frame_index=frame[order].astype(np.int32), type=types[order])
