"""``pluto-dvc cache inspect`` and ``pluto-dvc cache verify``.

``inspect_cache`` gathers counts, per-type counts, bytes per sample, failures by kind and the arrays
of one sample; ``verify_cache`` checks the manifest (checksum, rows against each shard's footer,
counts against its metadata) and every shard's SHA-256, footer and samples' CRC-32, and raises
:class:`CacheCorruptError` naming every problem.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.cache.dataset import CacheDataset
from pluto_dvc.cache.manifest import (
    FAILURES,
    MANIFEST,
    SHARDS,
    bad_shard_entries,
    load_manifest,
    manifest_problems,
    read_failures,
)
from pluto_dvc.cache.shard import (
    CacheCorruptError,
    file_sha256,
    is_shard_name,
    read_blob,
    read_footer,
)
from pluto_dvc.cache.worker import SAMPLE_COLUMNS, footer_problem


def inspect_cache(
    cache_dir: str | Path, index: int = 0, token: str | None = None
) -> dict[str, Any]:
    """Facts about a cache and the arrays of one sample (by ``index`` or ``token``)."""
    ds = CacheDataset(cache_dir)
    meta = ds.meta
    failures = read_failures(cache_dir)
    size = sum(s["bytes"] for s in meta["shards"])
    info: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "format": meta["format"],
        "codec": meta["codec"],
        "fingerprint": meta["fingerprint"][:16],
        "source": meta["source"],
        "num_scenarios": meta["num_scenarios"],
        "num_samples": meta["num_samples"],
        "num_failures": meta["num_failures"],
        "failures_by_kind": dict(Counter(failures.column("kind").to_pylist())),
        "num_shards": len(meta["shards"]),
        "bytes": size,
        "bytes_per_sample": round(size / meta["num_samples"]) if meta["num_samples"] else 0,
        "samples_per_type": dict(
            sorted(Counter(ds.table.column("scenario_type").to_pylist()).items())
        ),
    }
    if token is not None:
        hits = [i for i, t in enumerate(ds.table.column("token").to_pylist()) if t == token]
        if not hits:
            raise KeyError(f"token {token} is not in the cache")
        index = hits[0]
    if len(ds):
        sample = ds[index]
        log_name, tok, stype = ds.key(index)
        info["sample"] = {
            "index": index,
            "log_name": log_name,
            "token": tok,
            "scenario_type": stype,
            "blob_bytes": int(ds._length[index]),
            "arrays": {
                k: {"shape": list(a.shape), "dtype": str(a.dtype), **_stats(a)}
                for k, a in sample.items()
            },
        }
    ds.close()
    return info


def _stats(a: np.ndarray) -> dict[str, float]:
    if a.size == 0 or a.dtype.kind not in "biuf":
        return {}
    v = a.astype(np.float64)
    return {"min": float(v.min()), "max": float(v.max())}


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`inspect_cache`."""
    mb = info["bytes"] / 2**20
    lines = [
        f"cache {info['cache_dir']} ({info['format']}, codec {info['codec']}, "
        f"fingerprint {info['fingerprint']})",
        f"scenarios {info['num_scenarios']}: {info['num_samples']} samples in "
        f"{info['num_shards']} shards, {info['num_failures']} failed {info['failures_by_kind']}",
        f"size {mb:.1f} MiB, {info['bytes_per_sample'] / 1024:.1f} KiB per sample",
        "samples per type:",
        *(f"  {t:<45} {n}" for t, n in info["samples_per_type"].items()),
    ]
    sample = info.get("sample")
    if sample:
        lines.append(
            f"sample {sample['index']}: {sample['log_name']} {sample['token']} "
            f"({sample['scenario_type']}), blob {sample['blob_bytes'] / 1024:.1f} KiB"
        )
        for key, a in sample["arrays"].items():
            rng = f"  [{a['min']:.4g}, {a['max']:.4g}]" if "min" in a else ""
            lines.append(f"  {key:<36} {a['dtype']:<8} {tuple(a['shape'])}{rng}")
    return "\n".join(lines)


def format_failures(cache_dir: str | Path, limit: int = 20) -> str:
    """The failures table: counts by kind and whole reason, then the first ``limit`` rows."""
    table = read_failures(cache_dir)
    if table.num_rows == 0:
        return "no failures"
    rows = table.to_pylist()
    counts = Counter((r["kind"], r["reason"]) for r in rows)
    lines = [f"{table.num_rows} failed scenarios", "by kind and reason:"]
    lines += [f"  {n:>6} {kind:<8} {reason}" for (kind, reason), n in counts.most_common()]
    lines.append(f"first {min(limit, len(rows))}:")
    lines += [
        f"  {r['log_name']} {r['token']} {r['scenario_type']} {r['kind']}: {r['reason']}"
        for r in rows[:limit]
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class VerifyReport:
    num_shards: int
    num_samples: int
    bytes: int
    extra_files: list[str]


def verify_cache(
    cache_dir: str | Path, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Check the manifest (checksum, shard names, rows vs each shard's footer, counts vs the
    metadata and failures.parquet) and every shard (size, SHA-256, footer, each sample's CRC-32);
    CacheCorruptError lists every problem."""
    manifest = load_manifest(cache_dir)
    path = Path(cache_dir) / MANIFEST
    problems = [f"{path}: {p}" for p in manifest_problems(manifest)]
    if bad_shard_entries(manifest.meta):  # never open a path the manifest made up
        raise _corrupt_cache(cache_dir, problems)
    table, meta = manifest.table, manifest.meta
    shard_col = table.column("shard").to_numpy()
    order = np.argsort(shard_col, kind="stable")
    bounds = np.searchsorted(shard_col[order], np.arange(len(manifest.shards) + 1))
    rows = table.select(SAMPLE_COLUMNS).to_pydict()
    total = 0
    failures_listed = 0
    samples_listed = sum(s["samples"] for s in manifest.shards)
    for i, shard in enumerate(manifest.shards):
        shard_path = manifest.shard_path(i)
        picked = order[bounds[i] : bounds[i + 1]].tolist()
        expected = {c: [rows[c][r] for r in picked] for c in SAMPLE_COLUMNS}
        try:
            problems.extend(_verify_one(shard_path, shard, expected))
        except OSError as exc:
            problems.append(f"{shard_path}: cannot be read ({exc.strerror or exc})")
        total += shard["bytes"]
        failures_listed += shard["failures"]
        if progress:
            progress(1)
    failures = read_failures(cache_dir).num_rows
    for what, value, want in (
        ("num_failures", meta.get("num_failures"), failures_listed),
        ("num_scenarios", meta.get("num_scenarios"), samples_listed + failures_listed),
    ):
        if value != want:
            problems.append(f"{path}: metadata {what} is {value!r}, the shard table says {want}")
    if failures != failures_listed:
        problems.append(
            f"{Path(cache_dir) / FAILURES}: {failures} rows, the shard table lists "
            f"{failures_listed} failures"
        )
    shards_dir = Path(cache_dir) / SHARDS
    known = {s["name"] for s in manifest.shards}
    extra = sorted(e for e in os.listdir(shards_dir) if is_shard_name(e) and e not in known)
    if problems:
        raise _corrupt_cache(cache_dir, problems)
    return VerifyReport(len(manifest.shards), table.num_rows, total, extra)


def _corrupt_cache(cache_dir: str | Path, problems: list[str]) -> CacheCorruptError:
    return CacheCorruptError(
        f"{len(problems)} problem(s) in cache {cache_dir}:\n  "
        + "\n  ".join(problems)
        + "\nRestore with `dvc checkout data/cache`, or run `dvc repro -f build_cache` (it "
        "writes only the bad shards again, and the manifest)."
    )


def _verify_one(path: Path, shard: dict, expected: dict[str, list]) -> list[str]:
    """Problems of one shard: ``expected`` are its manifest rows (SAMPLE_COLUMNS, in order)."""
    if not path.is_file():
        return [f"{path}: missing"]
    problems = []
    size = path.stat().st_size
    if size != shard["bytes"]:
        problems.append(f"{path}: size {size}, expected {shard['bytes']}")
    digest = file_sha256(path)
    if digest != shard["sha256"]:
        problems.append(f"{path}: SHA-256 mismatch ({digest[:16]}... != {shard['sha256'][:16]}...)")
    try:
        footer = read_footer(path)
        problem = footer_problem(footer)
        if problem:
            problems.append(f"{path}: {problem}")
        else:
            problems.extend(_footer_vs_manifest(path, footer, shard, expected))
    except CacheCorruptError as exc:
        problems.append(str(exc).split(". Restore")[0])
    fd = os.open(path, os.O_RDONLY)
    try:
        bad = 0
        for offset, length, crc in zip(
            expected["offset"], expected["length"], expected["crc32"], strict=True
        ):
            try:
                read_blob(fd, offset, length, crc, path)
            except CacheCorruptError:
                bad += 1
        if bad:
            problems.append(f"{path}: {bad} sample(s) fail their CRC-32")
    finally:
        os.close(fd)
    return problems


def _footer_vs_manifest(path: Path, footer: dict, shard: dict, expected: dict) -> list[str]:
    samples = footer["samples"]
    problems = []
    if len(samples["token"]) != shard["samples"]:
        problems.append(
            f"{path}: footer lists {len(samples['token'])} samples, the manifest's shard table "
            f"{shard['samples']}"
        )
    if len(footer["failures"]["token"]) != shard["failures"]:
        problems.append(
            f"{path}: footer lists {len(footer['failures']['token'])} failures, the manifest's "
            f"shard table {shard['failures']}"
        )
    differ = [c for c in SAMPLE_COLUMNS if samples[c] != expected[c]]
    if differ:
        problems.append(
            f"{path}: the manifest's {len(expected['token'])} rows of this shard differ from its "
            f"footer ({len(samples['token'])} samples) in {differ}"
        )
    return problems
