"""A fake feature source for cache tests: realistic PLUTO-shaped samples, no log or map needed.

``FakeSource`` stands in for :class:`pluto_dvc.cache.FeatureSource`: it opens no database; every
(log, token) gets a deterministic sample (seeded by a hash of both) with the shapes and dtypes of
the PLUTO feature builder (spec/pluto.md §1): variable numbers of agents, static objects, map
polygons and reference lines, and a (600, 600, 1) float16 signed-distance cost map.
``changed_logs`` gives logs a new file identity. Failures are injected by token (``invalid`` raises ``FakeFeatureError``, ``crash`` a bug-like
``RuntimeError``) or by log (``bad_logs`` cannot be opened; ``kill_logs`` kill the worker process that opens them,
as the OS does to a process out of memory). ``nonfinite`` tokens get NaN / inf in some arrays. ``counter`` names a file that gets
one line ``<log_name> <token>`` per sample built, from any process. ``delay_s`` slows each build.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pluto_dvc.errors import DataError

T = 101  # 20 past + present + 80 future steps
COST_MAP_SIZE = 600


class FakeFeatureError(Exception):
    """The fake's ``FeatureError``: an invalid sample (deterministic, never retried)."""


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest(), "big")


def cost_map(rng: np.random.Generator, size: int = COST_MAP_SIZE, res: float = 0.2) -> np.ndarray:
    """(size, size, 1) float16 signed distance (m) to the edge of a few straight road strips."""
    half = size * res / 2
    coords = (np.arange(size, dtype=np.float32) + 0.5) * res - half
    x, y = np.meshgrid(coords, coords)
    sdf = np.full((size, size), -half, dtype=np.float32)
    for _ in range(rng.integers(2, 6)):
        angle = rng.uniform(-np.pi, np.pi)
        offset = rng.uniform(-30.0, 30.0)
        half_width = rng.uniform(3.5, 9.0)
        dist = np.abs(np.cos(angle) * y - np.sin(angle) * x - offset)
        np.maximum(sdf, half_width - dist, out=sdf)
    return sdf.astype(np.float16)[..., None]


def fake_sample(log_name: str, token: str, cost_maps: bool = True) -> dict[str, np.ndarray]:
    """One PLUTO-shaped sample, deterministic in (log_name, token)."""
    rng = np.random.default_rng(_seed(log_name, token))
    a = int(rng.integers(10, 49))  # agents incl. ego
    s = int(rng.integers(0, 12))  # static objects
    m = int(rng.integers(80, 260))  # map polygons
    r = int(rng.integers(1, 4))  # reference lines
    f32 = np.float32
    t = np.arange(T, dtype=f32) * 0.1
    speed = rng.uniform(0.0, 15.0, (a, 1)).astype(f32)
    heading0 = rng.uniform(-np.pi, np.pi, (a, 1)).astype(f32)
    start = rng.uniform(-60.0, 60.0, (a, 1, 2)).astype(f32)
    direction = np.stack([np.cos(heading0), np.sin(heading0)], axis=-1)
    position = start + (speed * t)[..., None] * direction
    valid = rng.random((a, T)) > 0.05
    pts = rng.uniform(-120.0, 120.0, (m, 3, 1, 2)).astype(f32)
    step = rng.normal(0.0, 0.5, (m, 3, 20, 2)).astype(f32)
    ref = np.cumsum(rng.normal(0.0, 1.0, (r, 120, 2)), axis=1).astype(f32)
    sample = {
        "current_state": rng.normal(0.0, 1.0, 7).astype(f32),
        "origin": rng.uniform(-1e5, 1e5, 2),
        "angle": np.asarray(rng.uniform(-np.pi, np.pi)),
        "agent.position": position.astype(f32),
        "agent.heading": np.broadcast_to(heading0, (a, T)).copy(),
        "agent.velocity": np.broadcast_to(speed[..., None] * direction, (a, T, 2)).astype(f32),
        "agent.shape": np.broadcast_to(rng.uniform(0.5, 5.0, (a, 1, 2)), (a, T, 2)).astype(f32),
        "agent.category": rng.integers(0, 4, a).astype(np.int8),
        "agent.valid_mask": valid,
        "agent.target": np.where(valid[:, 21:, None], rng.normal(0, 5, (a, 80, 3)), 0).astype(f32),
        "static_objects.position": rng.uniform(-60.0, 60.0, (s, 2)).astype(f32),
        "static_objects.heading": rng.uniform(-np.pi, np.pi, s).astype(f32),
        "static_objects.shape": rng.uniform(0.3, 2.0, (s, 2)).astype(f32),
        "static_objects.category": rng.integers(0, 4, s).astype(np.int8),
        "static_objects.valid_mask": np.ones(s, dtype=bool),
        "map.point_position": pts + np.cumsum(step, axis=2),
        "map.point_vector": step,
        "map.point_orientation": np.arctan2(step[..., 1], step[..., 0]),
        "map.point_side": np.broadcast_to(np.arange(3, dtype=np.int8), (m, 3)).copy(),
        "map.polygon_center": rng.uniform(-120.0, 120.0, (m, 3)).astype(f32),
        "map.polygon_position": pts[:, 0, 0, :].copy(),
        "map.polygon_orientation": rng.uniform(-np.pi, np.pi, m).astype(f32),
        "map.polygon_type": rng.integers(0, 3, m).astype(np.int8),
        "map.polygon_on_route": rng.random(m) > 0.7,
        "map.polygon_tl_status": rng.integers(0, 4, m).astype(np.int8),
        "map.polygon_has_speed_limit": rng.random(m) > 0.5,
        "map.polygon_speed_limit": rng.choice([0.0, 11.2, 15.6], m).astype(f32),
        "map.polygon_road_block_id": rng.integers(10_000, 90_000, m).astype(np.int64),
        "map.valid_mask": rng.random((m, 20)) > 0.1,
        "reference_line.position": ref,
        "reference_line.vector": np.diff(ref, axis=1, prepend=ref[:, :1]),
        "reference_line.orientation": rng.uniform(-np.pi, np.pi, (r, 120)).astype(f32),
        "reference_line.valid_mask": np.ones((r, 120), dtype=bool),
        "reference_line.future_projection": rng.normal(0.0, 10.0, (r, 8, 2)).astype(f32),
    }
    if cost_maps:
        sample["cost_maps"] = cost_map(rng)
    return sample


class FakeLog:
    """One opened log: tokens are found by any 16-hex string; builds ``fake_sample``."""

    def __init__(self, source: FakeSource, log_name: str):
        self.source = source
        self.log_name = log_name

    def frame_index(self, token: str) -> int:
        if token in self.source.missing:
            raise KeyError(token)
        return int(token, 16)

    def build(self, frame_index: int) -> dict[str, np.ndarray]:
        token = f"{frame_index:016x}"
        src = self.source
        if src.counter:
            # one small O_APPEND write per line: atomic across processes
            fd = os.open(src.counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{self.log_name} {token}\n".encode())
            finally:
                os.close(fd)
        if src.delay_s:
            time.sleep(src.delay_s)
        if token in src.invalid:
            raise FakeFeatureError(f"no reference line for token {token}")
        if token in src.crash:
            raise RuntimeError(f"simulated bug on {token}")
        sample = fake_sample(self.log_name, token, src.cost_maps)
        if token in src.nonfinite:
            sample["agent.position"][0, 3, 0] = np.nan
            sample["reference_line.future_projection"][0, 1, 1] = np.inf
        return sample


@dataclass(frozen=True)
class FakeSource:
    """Picklable stand-in for ``FeatureSource`` (see the module docstring)."""

    version: str = "fake-1"
    invalid: frozenset[str] = frozenset()
    crash: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()
    bad_logs: frozenset[str] = frozenset()
    counter: str = ""
    delay_s: float = 0.0
    cost_maps: bool = True
    changed_logs: frozenset[str] = frozenset()  # log names whose file "changed" (new identity)
    nonfinite: frozenset[str] = frozenset()
    kill_logs: frozenset[str] = frozenset()
    invalid_errors: tuple[type[BaseException], ...] = field(default=(FakeFeatureError,))

    def fingerprint(self) -> str:
        return hashlib.blake2b(f"{self.version}/{self.cost_maps}".encode()).hexdigest()[:32]

    def describe(self) -> dict:
        return {"builder": "tests/cache_fakes.FakeSource", "version": self.version}

    def log_identities(self, log_paths, worker) -> dict[str, str]:
        return {p: "v1" if Path(p).stem in self.changed_logs else "v0" for p in log_paths}

    def open_log(self, log_path: str, log_name: str) -> FakeLog:
        if log_name in self.kill_logs:
            os.kill(os.getpid(), signal.SIGKILL)
        if log_name in self.bad_logs:
            raise DataError(f"{log_path} is not a SQLite database (simulated)")
        return FakeLog(self, log_name)


def make_selection(num_logs: int, per_log: int, maps: tuple[str, ...] = ("us-ma-boston",)):
    """A scenarios table like ``data/scenarios.parquet`` (pandas), tokens 16 hex."""
    import pandas as pd

    rows = []
    types = ("following_lane_with_lead", "starting_left_turn", "stationary_in_traffic")
    for i in range(num_logs):
        log_name = f"2021.07.{i + 10:02d}.20.45.29_veh-35_01095_01486"
        for j in range(per_log):
            token = f"{_seed(log_name, str(j)) & ((1 << 64) - 1):016x}"
            rows.append(
                {
                    "log_name": log_name,
                    "token": token,
                    "scenario_type": types[j % len(types)],
                    "timestamp_us": 1_626_468_329_000_000 + j * 50_000,
                    "map_name": maps[i % len(maps)],
                    "log_path": f"nuplan-v1.1/splits/mini/{log_name}.db",
                }
            )
    return pd.DataFrame(rows)


def read_counter(path: str | Path) -> list[tuple[str, str]]:
    """The (log_name, token) lines of a counter file (empty when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line]  # type: ignore[misc]
