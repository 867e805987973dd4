"""The sharded feature cache: build, read, verify.

On disk (``data/cache/``, a DVC output)::

    manifest.parquet   one row per sample -> (shard, offset, length, crc32) + the shard table
    failures.parquet   one row per failed scenario (token, log, kind, reason)
    shards/<sha256>.shard   many LZ4-compressed samples each (format: :mod:`.shard`, :mod:`.codec`)

``run_build_cache(params)`` is the ``build_cache`` stage; ``CacheDataset`` reads samples for
training; ``verify_cache`` / ``inspect_cache`` back ``pluto-dvc cache verify|inspect``.
No pickle anywhere: a cache pulled from someone else's remote cannot run code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pluto_dvc.cache.builder import BuildReport
    from pluto_dvc.cache.source import SampleSource
    from pluto_dvc.params import Params

# Names re-exported lazily (PEP 562), so that reading a cache (``pluto_dvc.cache.dataset``,
# ``torch_loader``) never imports the builder and its map/GIS stack.
_EXPORTS = {
    "BuildReport": "builder",
    "CacheBuildError": "builder",
    "build_cache": "builder",
    "decode_sample": "codec",
    "encode_sample": "codec",
    "CacheDataset": "dataset",
    "inspect_cache": "inspect",
    "verify_cache": "inspect",
    "read_failures": "manifest",
    "read_manifest": "manifest",
    "CacheCorruptError": "shard",
    "FeatureSource": "source",
    "SampleSource": "source",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pluto_dvc.cache.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pluto_dvc.cache' has no attribute {name!r}")


CACHE_DIR = Path("data/cache")
SUMMARY_PATH = Path("data/cache_summary.json")

__all__ = [
    "CACHE_DIR",
    "SUMMARY_PATH",
    "BuildReport",
    "CacheBuildError",
    "CacheCorruptError",
    "CacheDataset",
    "FeatureSource",
    "SampleSource",
    "build_cache",
    "decode_sample",
    "describe",
    "encode_sample",
    "inspect_cache",
    "read_failures",
    "read_manifest",
    "run_build_cache",
    "verify_cache",
]


def run_build_cache(
    params: Params,
    scenarios_path: str | Path | None = None,
    cache_dir: str | Path = CACHE_DIR,
    summary_path: str | Path | None = SUMMARY_PATH,
    progress: bool = False,
    source: SampleSource | None = None,
) -> BuildReport:
    """The stage: cache ``data/scenarios.parquet`` with ``params.features`` and ``params.worker``.

    Writes the summary json (a DVC metric) even when the build then fails on the failure ratio.
    """
    from pluto_dvc.cache.builder import CacheBuildError, build_cache
    from pluto_dvc.cache.source import FeatureSource
    from pluto_dvc.nuplan.paths import resolve_dataset
    from pluto_dvc.selection import SCENARIOS_PATH, read_scenarios
    from pluto_dvc.selection.output import write_json

    selection = read_scenarios(scenarios_path or SCENARIOS_PATH).to_pandas()
    cache_dir = Path(cache_dir)
    if source is None:
        dataset = resolve_dataset(params.data, params.synthetic)
        source = FeatureSource(
            features=params.features,
            data_root=str(dataset.data_root),
            maps_root=str(dataset.maps_root),
            digest_state=str(cache_dir.parent / f".{cache_dir.name}.log-digests.json"),
        )
    try:
        report = build_cache(
            selection,
            cache_dir,
            source,
            samples_per_shard=params.features.samples_per_shard,
            max_failure_ratio=params.features.max_failure_ratio,
            worker=params.worker,
            progress=progress,
        )
    except CacheBuildError as exc:
        if summary_path is not None and exc.report is not None:
            write_json(summary_path, exc.report.summary)
        raise
    if summary_path is not None:
        write_json(summary_path, report.summary)
    return report


def describe(report: BuildReport) -> str:
    """One paragraph for the terminal."""
    s = report.summary
    rate = report.computed / report.seconds if report.seconds > 0 else 0.0
    kinds = ", ".join(f"{k} {n}" for k, n in s["failures_by_kind"].items()) or "none"
    lines = [
        f"cached {s['num_samples']} of {s['num_scenarios']} scenarios in {s['num_shards']} shards "
        f"({s['bytes'] / 2**20:.1f} MiB, {s['bytes_per_sample'] / 1024:.1f} KiB/sample) "
        f"in {report.cache_dir}",
        f"failed {s['num_failures']} ({s['failure_ratio']:.2%}; {kinds})",
        f"computed {report.computed}, reused {report.reused} samples; shards written "
        f"{report.shards_written}, kept {report.shards_kept}; {report.seconds:.1f} s "
        f"({rate:.1f} computed scenarios/s), peak worker memory {report.peak_worker_rss_mb:.0f} MB",
    ]
    if report.rebuilt_all:
        lines.insert(0, "features or feature code changed: the earlier cache was discarded")
    if report.corrupt_shards:
        lines.append(
            f"repaired {len(report.corrupt_shards)} corrupt shard(s) (bytes did not match their "
            f"SHA-256 name), written again: {', '.join(report.corrupt_shards)}"
        )
    return "\n".join(lines)
