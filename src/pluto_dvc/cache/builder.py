"""Build the sharded feature cache from a scenario selection: resumable, incremental, deterministic.

``build_cache(selection, cache_dir, source, ...)``:

1. sorts the selection and plans shards (:mod:`~pluto_dvc.cache.plan`); every shard has a spec
   (hash of the feature fingerprint and its rows, log file identities included);
2. reads the footers of the shards already on disk: a shard whose spec is planned again is kept
   as it is (an interrupted run resumes here; unchanged parts of a grown selection too) once its
   SHA-256 matches its name (a shard whose bytes changed is written again); any other shard of
   the same fingerprint, and a corrupt one, lends its samples' blobs (copied, CRC-checked, never
   recomputed); shards of another fingerprint, and footers that are malformed, are deleted;
3. runs one task per missing shard (:mod:`~pluto_dvc.cache.worker`) through
   :func:`pluto_dvc.workers.run_per_log` (sequential, processes or Ray). A task opens each of its
   logs once, builds or copies every sample and writes one shard (temp file, fsync, rename): a
   finished shard is its own commit record;
4. writes ``failures.parquet`` and then ``manifest.parquet`` (atomically) and deletes the shards the
   new manifest does not reference.

A scenario whose features raise is recorded in the shard footer and ``failures.parquet`` with a
kind: ``invalid`` (the builder's FeatureError; kept across runs), ``error`` (any other exception) or
``log`` (the log or map could not be opened; every scenario of it fails with that reason).
``error`` and ``log`` failures are retried by the next build. The build fails (after writing
everything) only when failures exceed ``max_failure_ratio`` of the selection.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from pluto_dvc.cache.codec import CODEC
from pluto_dvc.cache.manifest import (
    FAILURES,
    FAILURES_SCHEMA,
    FORMAT,
    MANIFEST,
    MANIFEST_SCHEMA,
    SHARDS,
    read_meta,
    write_manifest,
    write_parquet,
)
from pluto_dvc.cache.plan import plan_shards, shard_spec, sort_selection
from pluto_dvc.cache.shard import TMP_PREFIX, BlobRef, file_sha256, is_shard_name, read_footer
from pluto_dvc.cache.source import SampleSource
from pluto_dvc.cache.worker import (
    FAILURE_COLUMNS,
    RETRYABLE_KINDS,
    SAMPLE_COLUMNS,
    SHARD_FORMAT,
    ShardResult,
    ShardTask,
    build_shard,
    footer_problem,
)
from pluto_dvc.errors import DataError, PlutoDvcError
from pluto_dvc.params import WorkerParams
from pluto_dvc.workers import resolve_num_workers, run_per_log


class CacheBuildError(PlutoDvcError):
    """Too many scenarios failed (``report`` says what was written), or the cache is locked."""

    def __init__(self, message: str, report: BuildReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class BuildReport:
    """What a build did. ``summary`` is deterministic (the DVC metric); the rest is timing."""

    cache_dir: Path
    summary: dict[str, Any]
    computed: int
    reused: int
    shards_written: int
    shards_kept: int
    rebuilt_all: bool  # an earlier cache of other features (or feature code) was discarded
    corrupt_shards: list[str]  # shards whose bytes did not match their name: written again
    seconds: float
    peak_worker_rss_mb: float

    @property
    def failed(self) -> bool:
        return self.summary["failure_ratio"] > self.summary["max_failure_ratio"]


@contextlib.contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    """Exclusive lock beside the cache (outside the DVC output); released if the process dies."""
    lock = cache_dir.parent / f".{cache_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBuildError(f"another build is writing {cache_dir} (lock {lock})") from None
        yield


def _scan_shards(cache_dir: Path, fingerprint: str) -> tuple[dict[str, dict], bool]:
    """Footers of usable shards by file name; deletes temporaries and shards of other features.

    Returns (footers, discarded) where ``discarded`` says an earlier cache was dropped.
    """
    meta = read_meta(cache_dir)
    discarded = meta is not None and meta.get("fingerprint") != fingerprint
    if discarded:  # the manifest goes before the shards it points to
        for name in (MANIFEST, FAILURES):
            with contextlib.suppress(FileNotFoundError):
                (cache_dir / name).unlink()
    footers: dict[str, dict] = {}
    shards_dir = cache_dir / SHARDS
    if not shards_dir.is_dir():
        return footers, discarded
    for entry in sorted(os.scandir(shards_dir), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.name.startswith(TMP_PREFIX):
            path.unlink(missing_ok=True)  # left by an interrupted task
            continue
        if not is_shard_name(entry.name):
            continue
        try:
            footer = read_footer(path)
        except DataError:
            footer = {}
        if footer and footer_problem(footer):
            footer = {}
        if footer.get("format") != SHARD_FORMAT or footer.get("fingerprint") != fingerprint:
            discarded = discarded or bool(footer)
            path.unlink(missing_ok=True)
            continue
        footers[entry.name] = footer
    return footers, discarded


def _reuse_index(
    footers: dict[str, dict], shards_dir: Path, needed: dict[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], BlobRef], dict[tuple[str, str], str]]:
    """Blobs and known-invalid reasons of ``needed`` (log, token) -> log id, from old shards."""
    reuse: dict[tuple[str, str], BlobRef] = {}
    invalid: dict[tuple[str, str], str] = {}
    for name, footer in footers.items():
        ids = footer["logs"]
        s = footer["samples"]
        path = str(shards_dir / name)
        for log_name, token, offset, length, crc in zip(
            s["log_name"], s["token"], s["offset"], s["length"], s["crc32"], strict=True
        ):
            key = (log_name, token)
            if needed.get(key) == ids.get(log_name):
                reuse[key] = BlobRef(path, offset, length, crc)
        f = footer["failures"]
        for log_name, token, kind, reason in zip(
            f["log_name"], f["token"], f["kind"], f["reason"], strict=True
        ):
            key = (log_name, token)
            if kind == "invalid" and needed.get(key) == ids.get(log_name):
                invalid[key] = reason
    return reuse, invalid


def _columns_frame(footers: list[dict], part: str, columns: tuple[str, ...]) -> pd.DataFrame:
    frames = []
    for index, footer in enumerate(footers):
        df = pd.DataFrame({c: footer[part][c] for c in columns})
        df["shard"] = index
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _tables(table: pd.DataFrame, footers: list[dict]) -> tuple[pa.Table, pa.Table]:
    """The manifest and failures tables, in shard order, with map_name / timestamp_us joined."""
    extra = table[["log_name", "token", "map_name", "timestamp_us"]]
    samples = _columns_frame(footers, "samples", SAMPLE_COLUMNS)
    samples = samples.merge(extra, on=["log_name", "token"], how="left", validate="one_to_one")
    failures = _columns_frame(footers, "failures", FAILURE_COLUMNS)
    failures = failures.merge(extra, on=["log_name", "token"], how="left", validate="one_to_one")
    manifest = pa.Table.from_pandas(
        samples[MANIFEST_SCHEMA.names], schema=MANIFEST_SCHEMA, preserve_index=False
    )
    failed = pa.Table.from_pandas(
        failures[FAILURES_SCHEMA.names], schema=FAILURES_SCHEMA, preserve_index=False
    )
    return manifest, failed


def _summary(
    manifest: pa.Table, failures: pa.Table, shards: list[dict], max_failure_ratio: float
) -> dict[str, Any]:
    n_samples, n_failures = manifest.num_rows, failures.num_rows
    total = n_samples + n_failures
    size = sum(s["bytes"] for s in shards)
    kinds = Counter(failures.column("kind").to_pylist())
    types = Counter(manifest.column("scenario_type").to_pylist())
    return {
        "num_scenarios": total,
        "num_samples": n_samples,
        "num_failures": n_failures,
        "failure_ratio": round(n_failures / total, 6) if total else 0.0,
        "max_failure_ratio": max_failure_ratio,
        "failures_by_kind": dict(sorted(kinds.items())),
        "num_shards": len(shards),
        "bytes": size,
        "bytes_per_sample": round(size / n_samples) if n_samples else 0,
        "samples_per_type": dict(sorted(types.items())),
    }


@dataclass
class _Plan:
    ranges: list[tuple[int, int]]  # rows of the sorted selection per shard
    specs: list[str]
    done: dict[str, tuple[str, dict]]  # spec -> (file name, footer) of shards kept as they are
    tasks: list[ShardTask]  # one per shard to write
    discarded: bool
    corrupt: list[str]  # names of finished shards whose SHA-256 did not match: rebuilt


def _corrupt_names(shards_dir: Path, names: list[str], worker: WorkerParams) -> list[str]:
    """The shards among ``names`` whose bytes do not hash to their name (threads: hashlib
    releases the GIL); an unreadable file counts as corrupt."""

    def bad(name: str) -> bool:
        try:
            return file_sha256(shards_dir / name) != name.removesuffix(".shard")
        except OSError:
            return True

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(len(names), resolve_num_workers(worker))) as pool:
        return [n for n, b in zip(names, pool.map(bad, names), strict=True) if b]


def _plan(
    table: pd.DataFrame,
    cache_dir: Path,
    source: SampleSource,
    samples_per_shard: int,
    worker: WorkerParams,
) -> _Plan:
    """Shards of the selection, which exist already, and the tasks for the others."""
    shards_dir = cache_dir / SHARDS
    fingerprint = source.fingerprint()
    ids_by_path = source.log_identities(sorted(set(table["log_path"])), worker)
    ranges = plan_shards(table, samples_per_shard)
    specs = [shard_spec(fingerprint, table.iloc[a:b], ids_by_path) for a, b in ranges]
    footers, discarded = _scan_shards(cache_dir, fingerprint)
    planned = set(specs)
    done = {
        f["spec"]: (name, f)
        for name, f in footers.items()
        if f["spec"] in planned and not RETRYABLE_KINDS.intersection(f["failures"]["kind"])
    }
    corrupt = _corrupt_names(shards_dir, sorted(name for name, _ in done.values()), worker)
    done = {spec: kept for spec, kept in done.items() if kept[0] not in corrupt}
    rows = [tuple(r) for r in table[["log_name", "token", "scenario_type", "log_path"]].values]
    todo = [i for i, spec in enumerate(specs) if spec not in done]
    needed = {(r[0], r[1]): ids_by_path[r[3]] for i in todo for r in rows[slice(*ranges[i])]}
    reuse, invalid = _reuse_index(footers, shards_dir, needed)
    tasks = []
    for i in todo:
        task_rows = tuple(rows[slice(*ranges[i])])
        keys = [(r[0], r[1]) for r in task_rows]
        tasks.append(
            ShardTask(
                index=i,
                spec=specs[i],
                fingerprint=fingerprint,
                shards_dir=str(shards_dir),
                source=source,
                rows=task_rows,
                log_ids={r[0]: ids_by_path[r[3]] for r in task_rows},
                reuse={k: reuse[k] for k in keys if k in reuse},
                invalid={k: invalid[k] for k in keys if k in invalid},
            )
        )
    return _Plan(ranges, specs, done, tasks, discarded, corrupt)


def _run(plan: _Plan, total: int, worker: WorkerParams, progress: bool) -> dict[int, ShardResult]:
    """Run the tasks (tqdm: scenarios/s and ETA, advancing per finished shard)."""
    results: dict[int, ShardResult] = {}
    remaining = sum(len(t.rows) for t in plan.tasks)
    with tqdm(
        total=total,
        initial=total - remaining,
        unit="scenario",
        desc="build_cache",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for res in run_per_log(build_shard, plan.tasks, worker):
            results[res.index] = res
            a, b = plan.ranges[res.index]
            bar.update(b - a)
            bar.set_postfix(
                computed=sum(r.computed for r in results.values()),
                reused=sum(r.reused for r in results.values()),
                refresh=False,
            )
    return results


def build_cache(
    selection: pd.DataFrame,
    cache_dir: str | Path,
    source: SampleSource,
    *,
    samples_per_shard: int,
    max_failure_ratio: float,
    worker: WorkerParams,
    progress: bool = False,
) -> BuildReport:
    """Build (or complete, or update) the cache of ``selection`` in ``cache_dir``.

    ``selection``: the columns of ``data/scenarios.parquet``. Raises :class:`CacheBuildError`
    after writing everything when failures exceed ``max_failure_ratio`` of the selection.
    """
    start = time.perf_counter()
    cache_dir = Path(cache_dir)
    shards_dir = cache_dir / SHARDS
    table = sort_selection(selection)
    if table.empty:
        raise DataError("the scenario selection is empty: nothing to cache (check `filter`)")
    with _build_lock(cache_dir):
        shards_dir.mkdir(parents=True, exist_ok=True)
        plan = _plan(table, cache_dir, source, samples_per_shard, worker)
        results = _run(plan, len(table), worker, progress)
        names, footers = [], []
        for i, spec in enumerate(plan.specs):
            name, footer = (results[i].name, results[i].footer) if i in results else plan.done[spec]
            names.append(name)
            footers.append(footer)
        manifest, failures = _tables(table, footers)
        shards = [
            {
                "name": name,
                "sha256": name.removesuffix(".shard"),
                "bytes": (shards_dir / name).stat().st_size,
                "samples": len(f["samples"]["token"]),
                "failures": len(f["failures"]["token"]),
            }
            for name, f in zip(names, footers, strict=True)
        ]
        summary = _summary(manifest, failures, shards, max_failure_ratio)
        meta = {
            "format": FORMAT,
            "shard_format": SHARD_FORMAT,
            "codec": CODEC,
            "checksum": "sha256",
            "fingerprint": footers[0]["fingerprint"],
            "source": source.describe(),
            "samples_per_shard": samples_per_shard,
            "num_scenarios": summary["num_scenarios"],
            "num_samples": summary["num_samples"],
            "num_failures": summary["num_failures"],
            "shards": shards,
        }
        write_parquet(cache_dir / FAILURES, failures)
        write_manifest(cache_dir, manifest, meta)  # the commit point
        keep = set(names)
        for entry in os.scandir(shards_dir):
            if is_shard_name(entry.name) and entry.name not in keep:
                Path(entry.path).unlink(missing_ok=True)
    report = BuildReport(
        cache_dir=cache_dir,
        summary=summary,
        computed=sum(r.computed for r in results.values()),
        reused=sum(r.reused for r in results.values()),
        shards_written=len(results),
        shards_kept=len(plan.specs) - len(results),
        rebuilt_all=plan.discarded,
        corrupt_shards=plan.corrupt,
        seconds=time.perf_counter() - start,
        peak_worker_rss_mb=max((r.peak_rss_mb for r in results.values()), default=0.0),
    )
    if report.failed:
        raise CacheBuildError(failure_message(report, failures), report)
    return report


def failure_message(report: BuildReport, failures: pa.Table, top: int = 5) -> str:
    """Why the build failed: counts, the most common reasons (whole), where the details are."""
    s = report.summary
    reasons = Counter(failures.column("reason").to_pylist()).most_common()
    lines = [f"{n} x {reason}" for reason, n in reasons[:top]]
    if len(reasons) > top:
        rest = sum(n for _, n in reasons[top:])
        lines.append(f"... {len(reasons) - top} other reasons ({rest} scenarios)")
    listed = "\n  ".join(lines)
    return (
        f"{s['num_failures']} of {s['num_scenarios']} scenarios failed "
        f"({s['failure_ratio']:.1%}), above features.max_failure_ratio = "
        f"{s['max_failure_ratio']:g}. Most common reasons:\n  {listed}\n"
        f"Every failure (token, log, kind, reason) is in {report.cache_dir / FAILURES} "
        "(`pluto-dvc cache inspect --failures`). Fix the data or the feature builder, or raise "
        "features.max_failure_ratio. Built samples are kept: the next build retries only the "
        "scenarios that failed with an error (kinds 'error' and 'log')."
    )
