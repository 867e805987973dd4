"""The feature probe: a digest of what the current feature code builds on a fixed probe set.

Why: the cache must be rebuilt when an edit changes what a sample holds, and only then (at a
million scenarios a rebuild takes hours). Hashing the source files rebuilds on every comment;
the probe instead *runs* the current feature builder on a fixed set of scenarios and hashes the
arrays it returns. The ``feature_probe`` DVC stage depends on the feature and reader code; the
``build_cache`` stage depends on the probe's digest file, which is byte-identical after an edit
that changes no output, so DVC skips the cache. The digest also enters the cache fingerprint
(:class:`~pluto_dvc.cache.source.FeatureSource`), so shards of other outputs are never reused.

The probe set: ``PROBE_SCENARIOS`` scenarios, evenly spaced over the middle of one log of a small synthetic
dataset (fixed seed, tiny map) written to a temporary folder; invalid scenarios enter the digest
with their error's class. It does not depend on the user's data, so a grown selection keeps its
cache. Limits: an edit that changes outputs only for situations the probe set lacks is not seen
(``pluto-dvc build-cache`` with a changed probe, or deleting data/cache, forces a rebuild), and an
edit of the synthetic generator changes the probe's input and therefore rebuilds the cache.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.cache.source import code_hash, features_hash
from pluto_dvc.errors import DataError
from pluto_dvc.params import FeatureParams, SyntheticParams, WorkerParams

PROBE_FORMAT = "pluto-dvc-feature-probe/1"
PROBE_SCENARIOS = 24
PROBE_SYNTHETIC = {
    "seed": 11,
    "split": "probe",
    "num_logs": 1,
    "minutes_per_log": 0.5,
    "log_locations": ["us-nv-las-vegas-strip"],
    "map_size": "tiny",
    "num_vehicles": 14,
    "num_pedestrians": 6,
    "num_cyclists": 2,
}


def _hash_sample(h: Any, sample: dict[str, np.ndarray]) -> None:
    for key in sorted(sample):
        arr = np.ascontiguousarray(sample[key])
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())


def run_probe(features: FeatureParams) -> dict[str, Any]:
    """Build the probe set with ``features`` and the current code; the digest record.

    Returns ``{"format", "features_hash", "digest", "scenarios", "invalid"}``: a pure function
    of the feature params and what the code outputs (no code hash, no time).
    """
    from pluto_dvc.features import FeatureError, LogFeatureBuilder
    from pluto_dvc.nuplan.log_reader import load_log
    from pluto_dvc.nuplan.map_reader import MapsRoot
    from pluto_dvc.synthetic.dataset import synthesize_dataset

    with tempfile.TemporaryDirectory(prefix="pluto-probe-") as tmp:
        params = SyntheticParams(**PROBE_SYNTHETIC, output_dir=str(Path(tmp) / "probe"))
        synthesize_dataset(params, WorkerParams(kind="sequential"))
        root = Path(params.output_dir)
        logs = sorted(root.rglob("*.db"))
        if not logs:
            raise DataError(f"the feature probe wrote no log under {root}")
        log = load_log(logs[0])
        builder = LogFeatureBuilder(features, log, MapsRoot(root / "maps").load(log.meta.location))
        n = len(log.clock.token)  # frames near the ends lack history or future: 10 %..90 %
        frames = np.linspace(n // 10, n - 1 - n // 10, PROBE_SCENARIOS).round().astype(int)
        h = hashlib.sha256(f"{PROBE_FORMAT}\n".encode())
        invalid = 0
        for frame in frames.tolist():
            h.update(f"frame {frame}\n".encode())
            try:
                _hash_sample(h, builder.build(frame))
            except FeatureError as exc:
                invalid += 1
                h.update(f"invalid {type(exc).__name__}\n".encode())
    return {
        "format": PROBE_FORMAT,
        "features_hash": features_hash(features),
        "digest": h.hexdigest(),
        "scenarios": len(frames),
        "invalid": invalid,
    }


def probe_info() -> dict[str, Any]:
    """Facts about the probe run that are not part of the digest (the code hash it ran with)."""
    return {"code_hash": code_hash()}


def read_probe(path: str | Path, features: FeatureParams, info_path: str | Path | None) -> str:
    """The digest in ``path``, checked against ``features`` and (when ``info_path`` is given)
    against the current code; DataError with the fix when it is missing or stale."""
    path = Path(path)
    fix = "run `dvc repro feature_probe` (or `python stages/feature_probe.py`)"
    try:
        record = json.loads(path.read_text())
        digest, fhash = record["digest"], record["features_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"feature probe {path} is missing or unreadable ({exc}): {fix}") from exc
    if record.get("format") != PROBE_FORMAT:
        raise DataError(f"feature probe {path} has format {record.get('format')!r}: {fix}")
    if fhash != features_hash(features):
        raise DataError(f"feature probe {path} was made with other `features` params: {fix}")
    if info_path is not None:
        try:
            ran_with = json.loads(Path(info_path).read_text()).get("code_hash")
        except (OSError, ValueError, AttributeError):
            ran_with = None
        if ran_with != code_hash():
            raise DataError(
                f"feature probe {path} was made with other feature code than the current: {fix}"
            )
    return digest
