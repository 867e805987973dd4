"""The worker side of a cache build: one task writes one shard.

A :class:`ShardTask` carries everything a worker process needs (picklable, rows in shard order):
for each scenario the worker copies the blob of an earlier shard (CRC-checked), repeats a known
``invalid`` failure, or builds the sample with the source's log (opened once per log, on first
need). A scenario that raises is recorded with a kind: ``invalid`` (the source's invalid error,
e.g. FeatureError), ``error`` (any other exception; the reason names where it was raised) or
``log`` (the log or its map could not be opened). A sample holding NaN or infinity is refused
before it is written (kind ``invalid``, the reason names the arrays): training never meets one.
The shard's footer lists its samples and failures, so a finished shard is its own commit record.
"""

from __future__ import annotations

import os
import resource
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.cache.codec import CODEC, encode_sample
from pluto_dvc.cache.shard import BlobRef, CacheCorruptError, ShardWriter, read_blob
from pluto_dvc.cache.source import SampleSource

SHARD_FORMAT = "pluto-dvc-shard/1"
SAMPLE_COLUMNS = ("log_name", "token", "scenario_type", "offset", "length", "crc32")
FAILURE_COLUMNS = ("log_name", "token", "scenario_type", "kind", "reason")
RETRYABLE_KINDS = frozenset({"error", "log"})
MAX_REASON_CHARS = 4000  # whole messages; only a runaway one is cut


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to write one shard (picklable; rows in shard order)."""

    index: int
    spec: str
    fingerprint: str
    shards_dir: str
    source: SampleSource
    rows: tuple[tuple[str, str, str, str], ...]  # (log_name, token, scenario_type, log_path)
    log_ids: dict[str, str]  # log_name -> content identity of its file
    reuse: dict[tuple[str, str], BlobRef] = field(default_factory=dict)  # (log, token) -> blob
    invalid: dict[tuple[str, str], str] = field(default_factory=dict)  # (log, token) -> reason


@dataclass(frozen=True)
class ShardResult:
    index: int
    name: str
    footer: dict[str, Any]
    computed: int  # samples built by the feature builder (successfully or not)
    reused: int  # blobs copied from an earlier shard
    seconds: float
    peak_rss_mb: float  # peak resident memory of the process that ran the task


def _reason(exc: BaseException, with_origin: bool = False) -> str:
    text = f"{type(exc).__name__}: {exc}" if with_origin or not str(exc) else str(exc)
    if with_origin:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            where = Path(frames[-1].filename)
            text += f" (at {where.parent.name}/{where.name}:{frames[-1].lineno})"
    return text[:MAX_REASON_CHARS]


class _OpenLog:
    """The log a task is on: opened on first need, released when the task moves to the next."""

    def __init__(self, source: SampleSource):
        self.source = source
        self.path: str | None = None
        self.log: Any = None
        self.error = ""

    def get(self, log_path: str, log_name: str) -> tuple[Any, str]:
        if log_path != self.path:
            self.path, self.log, self.error = log_path, None, ""
            try:
                self.log = self.source.open_log(log_path, log_name)
            except Exception as exc:  # noqa: BLE001 - any failure to open counts for the log
                self.error = f"log {log_name} could not be opened: {_reason(exc)}"
        return self.log, self.error


class _OldBlobs:
    """Reads blobs of earlier shards; a damaged one returns None (the sample is built again)."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}

    def read(self, ref: BlobRef) -> bytes | None:
        try:
            if ref.path not in self.fds:
                self.fds[ref.path] = os.open(ref.path, os.O_RDONLY)
            return read_blob(self.fds[ref.path], ref.offset, ref.length, ref.crc32, ref.path)
        except (OSError, CacheCorruptError):
            return None

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def non_finite(sample: Mapping[str, np.ndarray]) -> str | None:
    """Why a sample must not be stored (NaN or infinity in float arrays), or None."""
    bad = []
    for key in sorted(sample):
        array = np.asarray(sample[key])
        if array.dtype.kind in "fc":
            count = array.size - int(np.count_nonzero(np.isfinite(array)))
            if count:
                bad.append(f"{key} ({count} of {array.size})")
    return f"non-finite values (NaN or inf) in {', '.join(bad)}" if bad else None


def footer_problem(footer: Mapping[str, Any]) -> str | None:
    """What makes a shard footer unusable (missing or malformed parts), or None."""
    for key, kind in (("format", str), ("fingerprint", str), ("spec", str), ("logs", dict)):
        if not isinstance(footer.get(key), kind):
            return f"footer has no valid {key!r}"
    for part, columns, ints in (
        ("samples", SAMPLE_COLUMNS, SAMPLE_COLUMNS[3:]),
        ("failures", FAILURE_COLUMNS, ()),
    ):
        table = footer.get(part)
        if not isinstance(table, dict) or not all(isinstance(table.get(c), list) for c in columns):
            return f"footer has no valid {part!r} table"
        if len({len(table[c]) for c in columns}) > 1:
            return f"footer's {part!r} columns differ in length"
        for c in columns:
            kind = int if c in ints else str
            if not all(type(v) is kind for v in table[c]):
                return f"footer's {part}.{c} holds values that are not {kind.__name__}"
    return None


def _compute(log: _OpenLog, row: tuple[str, str, str, str], source: SampleSource):
    """(blob, None, None) or (None, kind, reason) for one scenario."""
    log_name, token, _, log_path = row
    opened, error = log.get(log_path, log_name)
    if opened is None:
        return None, "log", error
    try:
        frame = opened.frame_index(token)
    except KeyError:
        return None, "error", f"token {token} is not a frame of log {log_name} (stale selection?)"
    try:
        sample = opened.build(frame)
        problem = non_finite(sample)
        if problem:
            return None, "invalid", problem
        return encode_sample(sample), None, None
    except source.invalid_errors as exc:
        return None, "invalid", _reason(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one sample must not stop the build
        return None, "error", _reason(exc, with_origin=True)


def build_shard(task: ShardTask) -> ShardResult:
    """Worker entry point: build or copy every sample of one shard and write it."""
    start = time.perf_counter()
    samples: dict[str, list] = {c: [] for c in SAMPLE_COLUMNS}
    failures: dict[str, list] = {c: [] for c in FAILURE_COLUMNS}
    computed = reused = 0
    log, old = _OpenLog(task.source), _OldBlobs()
    try:
        with ShardWriter(task.shards_dir, f"{task.index:05d}-{task.spec[:16]}") as writer:
            for row in task.rows:
                key = (row[0], row[1])
                blob, kind, reason = None, None, None
                if key in task.reuse:
                    blob = old.read(task.reuse[key])
                if blob is not None:
                    reused += 1
                elif key in task.invalid:
                    kind, reason = "invalid", task.invalid[key]
                else:
                    computed += 1
                    blob, kind, reason = _compute(log, row, task.source)
                if blob is not None:
                    for col, value in zip(
                        SAMPLE_COLUMNS, (*row[:3], *writer.add(blob)), strict=True
                    ):
                        samples[col].append(value)
                else:
                    for col, value in zip(FAILURE_COLUMNS, (*row[:3], kind, reason), strict=True):
                        failures[col].append(value)
            footer = {
                "format": SHARD_FORMAT,
                "codec": CODEC,
                "fingerprint": task.fingerprint,
                "spec": task.spec,
                "logs": task.log_ids,
                "samples": samples,
                "failures": failures,
            }
            path = writer.finish(footer)
    finally:
        old.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - start
    return ShardResult(task.index, path.name, footer, computed, reused, seconds, peak)
