"""``pluto-dvc cache inspect`` and ``pluto-dvc cache verify``.

``inspect_cache`` gathers counts, per-type counts, bytes per sample, failures by kind and the arrays
of one sample; ``verify_cache`` checks every shard's SHA-256, footer, and every sample's CRC-32
and bounds, and raises :class:`CacheCorruptError` naming every bad shard.
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
from pluto_dvc.cache.manifest import SHARDS, read_failures, read_manifest
from pluto_dvc.cache.shard import (
    CacheCorruptError,
    file_sha256,
    is_shard_name,
    read_blob,
    read_footer,
)


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
    """The failures table: counts by kind and reason, then the first ``limit`` rows."""
    table = read_failures(cache_dir)
    if table.num_rows == 0:
        return "no failures"
    rows = table.to_pylist()
    counts = Counter((r["kind"], r["reason"][:120]) for r in rows)
    lines = [f"{table.num_rows} failed scenarios", "by kind and reason:"]
    lines += [f"  {n:>6} {kind:<8} {reason}" for (kind, reason), n in counts.most_common(10)]
    lines.append(f"first {min(limit, len(rows))}:")
    lines += [
        f"  {r['log_name']} {r['token']} {r['scenario_type']} {r['kind']}: {r['reason'][:120]}"
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
    """Check every shard and sample of the manifest; CacheCorruptError lists all bad shards."""
    manifest = read_manifest(cache_dir)
    shard_col = manifest.table.column("shard").to_numpy()
    offsets = manifest.table.column("offset").to_numpy()
    lengths = manifest.table.column("length").to_numpy()
    crcs = manifest.table.column("crc32").to_numpy()
    order = np.argsort(shard_col, kind="stable")
    bounds = np.searchsorted(shard_col[order], np.arange(len(manifest.shards) + 1))
    problems: list[str] = []
    total = 0
    for i, shard in enumerate(manifest.shards):
        path = manifest.shard_path(i)
        rows = order[bounds[i] : bounds[i + 1]]
        try:
            problems.extend(_verify_one(path, shard, rows, offsets, lengths, crcs))
        except OSError as exc:
            problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
        total += shard["bytes"]
        if progress:
            progress(1)
    shards_dir = Path(cache_dir) / SHARDS
    known = {s["name"] for s in manifest.shards}
    extra = sorted(e for e in os.listdir(shards_dir) if is_shard_name(e) and e not in known)
    if problems:
        raise CacheCorruptError(
            f"{len(problems)} problem(s) in cache {cache_dir}:\n  "
            + "\n  ".join(problems)
            + "\nRestore with `dvc checkout data/cache` or delete the bad shard(s) and run "
            "`dvc repro build_cache` (only those shards are rebuilt)."
        )
    return VerifyReport(len(manifest.shards), manifest.table.num_rows, total, extra)


def _verify_one(path: Path, shard: dict, rows, offsets, lengths, crcs) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing"]
    problems = []
    if path.stat().st_size != shard["bytes"]:
        problems.append(f"{path}: size {path.stat().st_size}, expected {shard['bytes']}")
    digest = file_sha256(path)
    if digest != shard["sha256"]:
        problems.append(f"{path}: SHA-256 mismatch ({digest[:16]}... != {shard['sha256'][:16]}...)")
    try:
        footer = read_footer(path)
        if len(footer["samples"]["token"]) != shard["samples"]:
            problems.append(f"{path}: footer lists {len(footer['samples']['token'])} samples")
    except CacheCorruptError as exc:
        problems.append(str(exc).split(". Restore")[0])
    fd = os.open(path, os.O_RDONLY)
    try:
        bad = 0
        for r in rows:
            try:
                read_blob(fd, int(offsets[r]), int(lengths[r]), int(crcs[r]), path)
            except CacheCorruptError:
                bad += 1
        if bad:
            problems.append(f"{path}: {bad} sample(s) fail their CRC-32")
    finally:
        os.close(fd)
    return problems
