"""The synthetic nuPlan dataset: maps for all four locations and logs in the nuPlan on-disk format.

Layout (the same as a real download, see ``nuplan/paths.py``)::

    <output_dir>/maps/nuplan-maps-v1.0.json
    <output_dir>/maps/<location>/<version>/map.gpkg        (all four locations)
    <output_dir>/nuplan-v1.1/splits/<split>/<log_name>.db  (logs over ``log_locations``)
    <output_dir>/summary.json                              (counts per log, per map, per tag)

Everything follows from ``synthetic.seed``: the same params give byte-identical files whatever the
worker kind or count. The dataset is built in a temporary sibling folder and renamed into place,
so an interrupted run never leaves a half-written dataset behind (and the staging folder is removed
when a run fails or is interrupted; one left by a killed run goes with the next run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from tqdm import tqdm

from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.map_writer import write_maps_root
from pluto_dvc.nuplan.paths import SYNTHETIC_DB_VERSION
from pluto_dvc.params import SyntheticParams, WorkerParams
from pluto_dvc.synthetic.map_layers import network_to_layers
from pluto_dvc.synthetic.network import RoadNetwork
from pluto_dvc.synthetic.road_network import TINY, NetworkSize, generate_road_network
from pluto_dvc.workers import run_per_log

MAP_SIZES: dict[str, NetworkSize] = {"tiny": TINY, "default": NetworkSize()}
VEHICLES = ("veh-12", "veh-14", "veh-20", "veh-25", "veh-26", "veh-35", "veh-38", "veh-47")


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed for one part of the world (independent of Python's hash salt)."""
    text = "/".join([str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


@cache
def road_network(location: str, seed: int, map_size: str) -> RoadNetwork:
    """The road network of ``location``; generated once per process (deterministic)."""
    return generate_road_network(location, derive_seed(seed, "map", location), MAP_SIZES[map_size])


@cache
def road_elements(location: str, seed: int, map_size: str) -> dict:
    """The simulator's view of the road network (lanes, connectors, conflicts), once per process."""
    from pluto_dvc.synthetic.simulation import build_elements

    return build_elements(road_network(location, seed, map_size))


@dataclass(frozen=True)
class LogJob:
    """One log to synthesise: everything a worker process needs (plain, picklable values)."""

    index: int
    log_name: str
    location: str
    seed: int
    start: datetime
    path: str
    params: SyntheticParams


@dataclass
class LogStats:
    log_name: str
    location: str
    num_frames: int
    num_boxes: int
    num_tracks: int
    num_scenes: int
    tags: dict[str, int]
    seconds: float


@dataclass
class SynthesisSummary:
    """What one ``synthesize`` run wrote."""

    output_dir: str
    logs: list[LogStats] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        tags: Counter[str] = Counter()
        for log in self.logs:
            tags.update(log.tags)
        return {
            "num_logs": len(self.logs),
            "num_frames": sum(s.num_frames for s in self.logs),
            "num_boxes": sum(s.num_boxes for s in self.logs),
            "logs_per_location": dict(sorted(Counter(s.location for s in self.logs).items())),
            "tags_per_type": dict(sorted(tags.items())),
            "logs": [
                {k: v for k, v in vars(s).items() if k not in ("seconds", "tags")}
                for s in self.logs
            ],
        }

    def describe(self) -> str:
        data = self.to_json()
        return (
            f"synthesized {data['num_logs']} logs ({data['num_frames']} frames, "
            f"{data['num_boxes']} boxes, {len(data['tags_per_type'])} scenario types) "
            f"into {self.output_dir} in {self.seconds:.1f} s"
        )


def log_name_for(start: datetime, vehicle: str, index: int) -> str:
    """A log name in the nuPlan pattern ``2021.07.16.20.45.29_veh-35_01095_01486``."""
    first = 5 + 7 * (index % 50)
    return f"{start:%Y.%m.%d.%H.%M.%S}_{vehicle}_{first:05d}_{first + 300:05d}"


def plan_logs(params: SyntheticParams, logs_dir: Path) -> list[LogJob]:
    """The logs of the dataset: locations round robin, names, seeds and start times."""
    jobs = []
    base = datetime(2021, 5, 12, 8, 0, 0) + timedelta(days=derive_seed(params.seed, "day") % 180)
    for i in range(params.num_logs):
        location = params.log_locations[i % len(params.log_locations)]
        vehicle = VEHICLES[derive_seed(params.seed, "vehicle", i) % len(VEHICLES)]
        start = base + timedelta(hours=3 * i, seconds=derive_seed(params.seed, "start", i) % 3600)
        name = log_name_for(start, vehicle, i)
        jobs.append(
            LogJob(
                index=i,
                log_name=name,
                location=location,
                seed=derive_seed(params.seed, "log", i),
                start=start,
                path=str(logs_dir / f"{name}.db"),
                params=params,
            )
        )
    return jobs


def write_maps(params: SyntheticParams, maps_root: Path) -> None:
    """All four locations (a real maps root always holds them all)."""
    maps = {
        loc: network_to_layers(road_network(loc, params.seed, params.map_size)) for loc in LOCATIONS
    }
    write_maps_root(maps_root, maps)


def synthesize_log(job: LogJob) -> LogStats:
    """Simulate one log on its location's road network and write it as a nuPlan .db."""
    from pluto_dvc.synthetic.nuplan_tables import write_synthetic_log

    t0 = time.perf_counter()
    key = (job.location, job.params.seed, job.params.map_size)
    stats = write_synthetic_log(job, road_network(*key), road_elements(*key))
    stats.seconds = time.perf_counter() - t0
    return stats


def synthesize_dataset(
    params: SyntheticParams, worker: WorkerParams, progress: bool = False
) -> SynthesisSummary:
    """Write the whole dataset to ``params.output_dir`` (replacing it atomically)."""
    t0 = time.perf_counter()
    final = Path(params.output_dir)
    staging = final.parent / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    summary = SynthesisSummary(output_dir=str(final))
    try:
        logs_dir = staging / SYNTHETIC_DB_VERSION / "splits" / params.split
        logs_dir.mkdir(parents=True)
        write_maps(params, staging / "maps")
        jobs = plan_logs(params, logs_dir)
        results = run_per_log(synthesize_log, jobs, worker)
        for stats in tqdm(results, total=len(jobs), desc="synthesize logs", disable=not progress):
            summary.logs.append(stats)
        (staging / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        _replace_dir(staging, final)
    except BaseException:  # interrupted (Ctrl-C) or failed: leave no half-written staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - t0
    return summary


def _replace_dir(new: Path, final: Path) -> None:
    """Swap ``new`` into ``final``; the old content is removed only once the new one is in place."""
    old = final.parent / f".{final.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
