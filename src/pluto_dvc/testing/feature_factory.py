"""Hand-built maps and logs with known answers, for the feature-builder tests.

Maps are written as real GeoPackages (``map_factory.MapBuilder``) and read back with the map
reader; logs are ``LogArrays`` built in memory (20 Hz clock, one scene). Coordinates are local
metres added to the location's ``utm_origin`` (X0, Y0).

``intersection_layers()``: a four-way junction centred on (X0, Y0), box [-12, 12]^2:
- lane 1000 (roadblock 100): northbound on x = 1.75 from y = -200 to y = -12;
- lane 1001 (101): northbound on x = 1.75, y = 12 .. 200;
- lane 1002 (102): westbound on y = 1.75, x = -12 .. -200;
- lane 1003 (103): eastbound on y = -1.75, x = 12 .. 200;
- connectors 2001 straight (roadblock connector 3001: 100 -> 101), 2002 left turn (3002:
  100 -> 102, quarter circle about (-12, -12)), 2003 right turn (3003: 100 -> 103);
- crosswalk 601 across the south arm at y in [-16, -13].
``straight_road_layers()``: two eastbound lanes (roadblock 100) y = 0 (lane 1000, left) and
y = -3.5 (lane 1001), x = -300 .. 300, so the road spans y in [-5.25, 1.75].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from shapely.geometry import box

from pluto_dvc.arrays import offsets_of_sorted
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
from pluto_dvc.nuplan.log_schema import CATEGORY_CODES, LOG_FRAME_US, make_tokens
from pluto_dvc.nuplan.map_reader import NuPlanMap
from pluto_dvc.nuplan.map_writer import write_map_gpkg
from pluto_dvc.testing.map_factory import MapBuilder, arc, straight

LOCATION = LOCATIONS["us-nv-las-vegas-strip"]
X0, Y0 = LOCATION.utm_origin
FRAME_US = LOG_FRAME_US


def _p(x: float, y: float) -> tuple[float, float]:
    return (X0 + x, Y0 + y)


def _group_polygon(b: MapBuilder, fid: int, lane_fids: tuple[int, ...]) -> None:
    from shapely import union_all

    polys = [g for r, g in b.rows["lanes_polygons"] if r["fid"] in lane_fids]
    b.add("lane_groups_polygons", fid, union_all(polys))


def intersection_layers() -> dict:
    b = MapBuilder()
    b.lane(1000, 100, 0, straight(_p(1.75, -200), _p(1.75, -12)), (5000, 5001), 13.0)
    b.lane(1001, 101, 0, straight(_p(1.75, 12), _p(1.75, 200)), (5002, 5003), 13.0)
    b.lane(1002, 102, 0, straight(_p(-12, 1.75), _p(-200, 1.75)), (5004, 5005), 13.0)
    b.lane(1003, 103, 0, straight(_p(12, -1.75), _p(200, -1.75)), (5006, 5007))
    b.connector(2001, 1000, 1001, 3001, 401, straight(_p(1.75, -12), _p(1.75, 12)), (5010, 5011))
    left = arc(_p(-12, -12), 13.75, 0.0, math.pi / 2)
    b.connector(2002, 1000, 1002, 3002, 401, left, (5012, 5013), 8.0)
    right = arc(_p(12, -12), 10.25, math.pi, math.pi / 2)
    b.connector(2003, 1000, 1003, 3003, 401, right, (5014, 5015))
    for fid, lane in ((100, 1000), (101, 1001), (102, 1002), (103, 1003)):
        _group_polygon(b, fid, (lane,))
    for fid, frm, to, conn in (
        (3001, 100, 101, 2001),
        (3002, 100, 102, 2002),
        (3003, 100, 103, 2003),
    ):
        b.connector_group(fid, frm, to, conn, 401)
    b.add("intersections", 401, box(*_p(-12, -12), *_p(12, 12)))
    b.add("crosswalks", 601, box(*_p(-3.5, -16), *_p(3.5, -13)))
    b.add("walkways", 701, box(*_p(5, -200), *_p(7, -14)))
    b.add("carpark_areas", 801, box(*_p(-60, -60), *_p(-40, -40)))
    b.add("stop_polygons", 501, box(*_p(0, -14), *_p(3.5, -12)), stop_polygon_type_fid=2)
    return b.layers()


def straight_road_layers() -> dict:
    b = MapBuilder()
    b.lane(1000, 100, 0, straight(_p(-300, 0), _p(300, 0)), (5000, 5001), 13.0)
    b.lane(1001, 100, 1, straight(_p(-300, -3.5), _p(300, -3.5)), (5001, 5002), 13.0)
    b.add("lane_groups_polygons", 100, box(*_p(-300, -5.25), *_p(300, 1.75)))
    b.add("intersections", 401, box(*_p(400, 400), *_p(410, 410)))
    b.add("crosswalks", 601, box(*_p(400, 400), *_p(404, 410)))
    b.add("walkways", 701, box(*_p(-300, 3), *_p(300, 5)))
    b.add("carpark_areas", 801, box(*_p(400, 420), *_p(410, 430)))
    b.add("stop_polygons", 501, box(*_p(400, 400), *_p(401, 401)), stop_polygon_type_fid=2)
    return b.layers()


def write_map(directory: Path, layers: dict) -> NuPlanMap:
    path = Path(directory) / LOCATION.name / LOCATION.version / "map.gpkg"
    write_map_gpkg(path, layers, LOCATION)
    return NuPlanMap.from_gpkg(path, LOCATION.name)


@dataclass
class Box:
    """One detected box: track id, frame, category name, local x, y (m), heading, size, velocity."""

    track: int
    frame: int
    category: str
    x: float
    y: float
    heading: float
    width: float = 2.0
    length: float = 4.5
    vx: float = 0.0
    vy: float = 0.0


@dataclass
class LogSpec:
    """An in-memory log: ego local poses per frame and boxes; one scene with ``route``."""

    ego_x: np.ndarray
    ego_y: np.ndarray
    ego_heading: np.ndarray
    ego_speed: np.ndarray
    route: tuple[int, ...]
    boxes: list[Box] = field(default_factory=list)
    lights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # frame -> (conn, code)
    all_frames_lights: list[tuple[int, int]] = field(default_factory=list)


def ego_drive(n: int, start: tuple[float, float], heading: float, speed: float):
    """Straight constant-speed ego poses of n frames: x, y, heading, speed arrays."""
    t = np.arange(n) * FRAME_US * 1e-6
    x = start[0] + speed * t * math.cos(heading)
    y = start[1] + speed * t * math.sin(heading)
    return x, y, np.full(n, heading), np.full(n, speed)


def make_log(spec: LogSpec, name: str = "2021.01.01.00.00.00_veh-1_00001_00002") -> LogArrays:
    n = len(spec.ego_x)
    boxes = sorted(spec.boxes, key=lambda b: (b.frame, b.track))
    tracks = sorted({b.track for b in boxes})
    track_row = {t: i for i, t in enumerate(tracks)}
    frames = np.array([b.frame for b in boxes], dtype=np.int64)
    frame_start = offsets_of_sorted(frames, n)
    lights = []
    for f in range(n):
        rows = sorted(spec.lights.get(f, []) + spec.all_frames_lights)
        lights.extend((f, c, s) for c, s in rows)
    light_frames = np.array([r[0] for r in lights], dtype=np.int64)

    def col(name: str) -> np.ndarray:
        return np.array([getattr(b, name) for b in boxes], dtype=np.float64)

    log = LogArrays(
        meta=LogMeta(name, b"\x01" * 8, "veh-1", "2021-01-01", 0, name, LOCATION.name, Path(name)),
        clock=LidarClock(
            token=make_tokens(name, "lidar_pc", n),
            timestamp_us=(1_600_000_000_000_000 + FRAME_US * np.arange(n)).astype(np.int64),
            scene_index=np.zeros(n, dtype=np.int32),
            ego_index=np.arange(n, dtype=np.int32),
        ),
        ego=EgoStates(
            token=make_tokens(name, "ego_pose", n),
            x=X0 + np.asarray(spec.ego_x, dtype=np.float64),
            y=Y0 + np.asarray(spec.ego_y, dtype=np.float64),
            heading=np.asarray(spec.ego_heading, dtype=np.float64),
            vx=np.asarray(spec.ego_speed, dtype=np.float64),
            vy=np.zeros(n),
            ax=np.zeros(n),
            ay=np.zeros(n),
            yaw_rate=np.zeros(n),
        ),
        tracks=TrackedObjects(
            frame_start=frame_start,
            track_tokens=make_tokens(name, "track", len(tracks)),
            track_index=np.array([track_row[b.track] for b in boxes], dtype=np.int32),
            category=np.array([CATEGORY_CODES[b.category] for b in boxes], dtype=np.int8),
            x=X0 + col("x"),
            y=Y0 + col("y"),
            heading=col("heading"),
            width=col("width"),
            length=col("length"),
            height=np.full(len(boxes), 1.5),
            vx=col("vx"),
            vy=col("vy"),
        ),
        traffic_lights=TrafficLights(
            frame_start=offsets_of_sorted(light_frames, n),
            lane_connector_id=np.array([r[1] for r in lights], dtype=np.int64),
            status=np.array([r[2] for r in lights], dtype=np.int8),
        ),
        tags=ScenarioTags(np.zeros(0, dtype=np.int32), np.zeros(0, dtype="U1")),
        scenes=Scenes(
            token=make_tokens(name, "scene", 1),
            name=np.array(["scene-0000"]),
            goal_x=np.array([np.nan]),
            goal_y=np.array([np.nan]),
            goal_heading=np.array([np.nan]),
            roadblock_start=np.array([0, len(spec.route)], dtype=np.int64),
            roadblock_ids=np.array(spec.route, dtype=np.int64),
        ),
    )
    log.validate()
    return log


def moving_box(
    track: int,
    n: int,
    category: str,
    start: tuple[float, float],
    heading: float,
    speed: float,
    **size: float,
) -> list[Box]:
    """A box moving straight at constant speed, present in every frame."""
    out = []
    for f in range(n):
        t = f * FRAME_US * 1e-6
        out.append(
            Box(
                track,
                f,
                category,
                start[0] + speed * t * math.cos(heading),
                start[1] + speed * t * math.sin(heading),
                heading,
                vx=speed * math.cos(heading),
                vy=speed * math.sin(heading),
                **size,
            )
        )
    return out


EXPECTED_KEYS = {
    "current_state": ("float32", (7,)),
    "origin": ("float64", (2,)),
    "angle": ("float64", ()),
    "agent.position": ("float32", ("A", 101, 2)),
    "agent.heading": ("float32", ("A", 101)),
    "agent.velocity": ("float32", ("A", 101, 2)),
    "agent.shape": ("float32", ("A", 101, 2)),
    "agent.category": ("int8", ("A",)),
    "agent.valid_mask": ("bool", ("A", 101)),
    "agent.target": ("float32", ("A", 80, 3)),
    "map.point_position": ("float32", ("M", 3, 20, 2)),
    "map.point_vector": ("float32", ("M", 3, 20, 2)),
    "map.point_orientation": ("float32", ("M", 3, 20)),
    "map.point_side": ("int8", ("M", 3)),
    "map.polygon_center": ("float32", ("M", 3)),
    "map.polygon_position": ("float32", ("M", 2)),
    "map.polygon_orientation": ("float32", ("M",)),
    "map.polygon_type": ("int8", ("M",)),
    "map.polygon_on_route": ("bool", ("M",)),
    "map.polygon_tl_status": ("int8", ("M",)),
    "map.polygon_has_speed_limit": ("bool", ("M",)),
    "map.polygon_speed_limit": ("float32", ("M",)),
    "map.polygon_road_block_id": ("int64", ("M",)),
    "map.polygon_id": ("int64", ("M",)),
    "map.valid_mask": ("bool", ("M", 20)),
    "reference_line.position": ("float32", ("R", 120, 2)),
    "reference_line.vector": ("float32", ("R", 120, 2)),
    "reference_line.orientation": ("float32", ("R", 120)),
    "reference_line.valid_mask": ("bool", ("R", 120)),
    "reference_line.future_projection": ("float32", ("R", 8, 2)),
    "static_objects.position": ("float32", ("S", 2)),
    "static_objects.heading": ("float32", ("S",)),
    "static_objects.shape": ("float32", ("S", 2)),
    "static_objects.category": ("int8", ("S",)),
    "static_objects.valid_mask": ("bool", ("S",)),
    "cost_maps": ("float16", (600, 600, 1)),
    "causal.leading_agent_mask": ("bool", ("A",)),
    "causal.leading_distance": ("float32", ("A",)),
    "causal.is_waiting_for_red_light_without_lead": ("bool", ()),
    "causal.ego_care_red_light_mask": ("bool", ("M",)),
    "causal.fixed_ego_future_valid_mask": ("bool", (80,)),
    "causal.free_path_points": ("float32", ("N", 3)),
    "causal.free_path_valid_mask": ("bool", ("N",)),
    "causal.interaction_label": ("int16", ("A",)),
}


def check_keys_shapes_dtypes(sample: dict[str, np.ndarray]) -> dict[str, int]:
    """Every expected key with its dtype and a shape consistent across keys; returns the sizes."""
    assert set(sample) == set(EXPECTED_KEYS)
    sizes: dict[str, int] = {}
    for key, (dtype, pattern) in EXPECTED_KEYS.items():
        value = sample[key]
        assert value.dtype == np.dtype(dtype), key
        assert value.ndim == len(pattern), key
        for dim, want in zip(value.shape, pattern, strict=True):
            if isinstance(want, str):
                want = sizes.setdefault(want, dim)
            assert dim == want, (key, value.shape, pattern)
    return sizes
