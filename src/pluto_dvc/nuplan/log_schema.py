"""The nuPlan log database schema as data, category and traffic-light codes, and token helpers.

Every ``token`` / ``*_token`` column is an 8-byte BLOB; users see it as 16 hex characters. In
numpy, tokens are kept as ``'S8'`` arrays (exactly 8 bytes per item). Beware that indexing one item
of an ``'S8'`` array strips trailing zero bytes: convert with :func:`token_list` / :func:`tokens_hex`
/ :func:`token_keys`, never item by item.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from pluto_dvc.errors import PlutoDvcError

TOKEN_BYTES = 8
TOKEN_TYPE = "BLOB"


class ObjectCategory(IntEnum):
    """``category.name`` of a tracked object; ``TrackedObjects.category`` holds these codes."""

    VEHICLE = 0
    BICYCLE = 1
    PEDESTRIAN = 2
    TRAFFIC_CONE = 3
    BARRIER = 4
    CZONE_SIGN = 5
    GENERIC_OBJECT = 6


class TrafficLightStatus(IntEnum):
    """``traffic_light_status.status``; ``TrafficLights.status`` holds these codes."""

    GREEN = 0
    YELLOW = 1
    RED = 2
    UNKNOWN = 3


# The names as the log stores them, in code order, and name -> code.
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in ObjectCategory)
CATEGORY_CODES: dict[str, int] = {name: code for code, name in enumerate(CATEGORY_NAMES)}
TRAFFIC_LIGHT_STATUS_NAMES: tuple[str, ...] = tuple(s.name.lower() for s in TrafficLightStatus)
TRAFFIC_LIGHT_STATUS_CODES: dict[str, int] = {
    name: code for code, name in enumerate(TRAFFIC_LIGHT_STATUS_NAMES)
}

LOG_FRAME_S = 0.05  # s, the lidar_pc clock of a log (20 Hz): one frame per MergedPointCloud sweep
LOG_FRAME_US = 50_000  # the same in microseconds (timestamps)
MERGED_POINT_CLOUD = "MergedPointCloud"  # the only lidar channel the pipeline reads
UNKNOWN_SCENARIO_TYPE = "unknown"  # scenario type of untagged frames


@dataclass(frozen=True)
class Column:
    """One column: name, SQL type, whether NULL is allowed, and the table its token refers to."""

    name: str
    sql_type: str
    nullable: bool = True
    references: str | None = None

    @property
    def is_token(self) -> bool:
        return self.name == "token" or self.name.endswith("_token")


@dataclass(frozen=True)
class Table:
    """One table: ordered columns (``token`` first, the primary key) and indexed columns."""

    name: str
    columns: tuple[Column, ...]
    indexes: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def token_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.is_token)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def create_statement(self) -> str:
        parts = []
        for c in self.columns:
            not_null = " NOT NULL" if not c.nullable else ""
            parts.append(f"{c.name} {c.sql_type}{not_null}")
        parts.append("PRIMARY KEY (token)")
        parts += [
            f"FOREIGN KEY({c.name}) REFERENCES {c.references} (token)"
            for c in self.columns
            if c.references is not None
        ]
        body = ",\n\t".join(parts)
        return f"CREATE TABLE {self.name} (\n\t{body}\n)"

    def index_statements(self) -> list[str]:
        return [f"CREATE INDEX ix_{self.name}_{col} ON {self.name} ({col})" for col in self.indexes]


def _pk() -> Column:
    return Column("token", TOKEN_TYPE, nullable=False)


def _ref(name: str, table: str, nullable: bool = False) -> Column:
    return Column(name, TOKEN_TYPE, nullable=nullable, references=table)


def _floats(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, "FLOAT") for n in names)


_V64 = "VARCHAR(64)"

TABLES: tuple[Table, ...] = (
    Table(
        "log",
        (
            _pk(),
            Column("vehicle_name", _V64),
            Column("date", _V64),
            Column("timestamp", "INTEGER"),
            Column("logfile", _V64),
            Column("location", _V64),
            Column("map_version", _V64),
        ),
    ),
    Table(
        "ego_pose",
        (
            _pk(),
            Column("timestamp", "INTEGER"),
            *_floats("x", "y", "z", "qw", "qx", "qy", "qz", "vx", "vy", "vz"),
            *_floats("acceleration_x", "acceleration_y", "acceleration_z"),
            *_floats("angular_rate_x", "angular_rate_y", "angular_rate_z"),
            Column("epsg", "INTEGER"),
            _ref("log_token", "log"),
        ),
        indexes=("log_token", "timestamp"),
    ),
    Table(
        "lidar",
        (
            _pk(),
            _ref("log_token", "log"),
            Column("channel", _V64),
            Column("model", _V64),
            Column("translation", "BLOB"),
            Column("rotation", "BLOB"),
        ),
        indexes=("log_token",),
    ),
    Table(
        "lidar_pc",
        (
            _pk(),
            _ref("next_token", "lidar_pc", nullable=True),
            _ref("prev_token", "lidar_pc", nullable=True),
            _ref("ego_pose_token", "ego_pose"),
            _ref("lidar_token", "lidar"),
            _ref("scene_token", "scene", nullable=True),
            Column("filename", "VARCHAR(128)"),
            Column("timestamp", "INTEGER"),
        ),
        indexes=("scene_token", "lidar_token", "ego_pose_token", "timestamp"),
    ),
    Table(
        "lidar_box",
        (
            _pk(),
            _ref("lidar_pc_token", "lidar_pc"),
            _ref("track_token", "track"),
            _ref("next_token", "lidar_box", nullable=True),
            _ref("prev_token", "lidar_box", nullable=True),
            *_floats("x", "y", "z", "width", "length", "height", "vx", "vy", "vz"),
            *_floats("yaw", "confidence"),
        ),
        indexes=("lidar_pc_token", "track_token"),
    ),
    Table(
        "track",
        (_pk(), _ref("category_token", "category"), *_floats("width", "length", "height")),
        indexes=("category_token",),
    ),
    Table("category", (_pk(), Column("name", _V64), Column("description", "TEXT"))),
    Table(
        "scene",
        (
            _pk(),
            _ref("log_token", "log"),
            Column("name", "TEXT"),
            _ref("goal_ego_pose_token", "ego_pose", nullable=True),
            Column("roadblock_ids", "TEXT"),
        ),
        indexes=("log_token",),
    ),
    Table(
        "scenario_tag",
        (
            _pk(),
            _ref("lidar_pc_token", "lidar_pc"),
            Column("type", "TEXT"),
            _ref("agent_track_token", "track", nullable=True),
        ),
        indexes=("lidar_pc_token", "type"),
    ),
    Table(
        "traffic_light_status",
        (
            _pk(),
            _ref("lidar_pc_token", "lidar_pc"),
            Column("lane_connector_id", "INTEGER"),
            Column("status", "VARCHAR(8)"),
        ),
        indexes=("lidar_pc_token",),
    ),
    Table(
        "camera",
        (
            _pk(),
            _ref("log_token", "log"),
            Column("channel", _V64),
            Column("model", _V64),
            Column("translation", "BLOB"),
            Column("rotation", "BLOB"),
            Column("intrinsic", "BLOB"),
            Column("distortion", "BLOB"),
            Column("width", "INTEGER"),
            Column("height", "INTEGER"),
        ),
        indexes=("log_token",),
    ),
    Table(
        "image",
        (
            _pk(),
            _ref("next_token", "image", nullable=True),
            _ref("prev_token", "image", nullable=True),
            _ref("ego_pose_token", "ego_pose"),
            _ref("camera_token", "camera"),
            Column("filename_jpg", "VARCHAR(128)"),
            Column("timestamp", "INTEGER"),
        ),
        indexes=("camera_token", "ego_pose_token", "timestamp"),
    ),
)

SCHEMA: dict[str, Table] = {t.name: t for t in TABLES}


def create_statements(include_indexes: bool = True) -> list[str]:
    """``CREATE TABLE`` statements of every table in schema order, then ``CREATE INDEX`` ones."""
    statements = [t.create_statement() for t in TABLES]
    if include_indexes:
        statements += index_statements()
    return statements


def index_statements() -> list[str]:
    """``CREATE INDEX`` statements of every table (run them after bulk inserts: faster)."""
    return [s for t in TABLES for s in t.index_statements()]


# ---------------------------------------------------------------------------------------- tokens


class TokenFormatError(PlutoDvcError, ValueError):
    """A token string is not 16 hex characters (8 bytes)."""


_HEX16 = re.compile(r"[0-9a-fA-F]{16}")


def token_to_hex(token: bytes) -> str:
    """8-byte token -> 16 lowercase hex characters."""
    if not isinstance(token, bytes | bytearray | memoryview) or len(token) != TOKEN_BYTES:
        raise TokenFormatError(f"a token must be {TOKEN_BYTES} bytes, got {token!r}")
    return bytes(token).hex()


def hex_to_token(text: str) -> bytes:
    """16 hex characters (either case) -> 8-byte token; anything else raises TokenFormatError."""
    if not isinstance(text, str) or _HEX16.fullmatch(text) is None:
        raise TokenFormatError(
            f"invalid token {text!r}: a nuPlan token is 16 hex characters such as "
            "'0a1b2c3d4e5f6789' (the lidar_pc token of a scenario)"
        )
    return bytes.fromhex(text)


def make_tokens(log_name: str, table: str, count: int, start: int = 0) -> np.ndarray:
    """Deterministic tokens ``(count,) 'S8'`` for rows ``start .. start+count-1`` of a table.

    Token i is the first 8 bytes of BLAKE2b(``log_name / table / i``): it depends only on its
    index, so appending rows never changes earlier tokens.
    """
    prefix = f"{log_name}\x1f{table}\x1f".encode()
    digests = (
        hashlib.blake2b(prefix + str(i).encode(), digest_size=TOKEN_BYTES).digest()
        for i in range(start, start + count)
    )
    return np.frombuffer(b"".join(digests), dtype="S8").copy()


def token_list(tokens: np.ndarray) -> list[bytes]:
    """``(N,) 'S8'`` -> list of N 8-byte ``bytes`` (no trailing-zero stripping)."""
    raw = np.ascontiguousarray(tokens, dtype="S8").tobytes()
    return [raw[i : i + TOKEN_BYTES] for i in range(0, len(raw), TOKEN_BYTES)]


def tokens_hex(tokens: np.ndarray) -> np.ndarray:
    """``(N,) 'S8'`` -> ``(N,) '<U16'`` lowercase hex strings."""
    raw = np.ascontiguousarray(tokens, dtype="S8").tobytes()
    return np.frombuffer(raw.hex().encode("ascii"), dtype="S16").astype("U16")


def token_keys(tokens: np.ndarray) -> np.ndarray:
    """``(N,) 'S8'`` -> ``(N,) uint64`` keys; key order equals byte-wise token order."""
    return np.ascontiguousarray(tokens, dtype="S8").view(">u8").astype(np.uint64)
