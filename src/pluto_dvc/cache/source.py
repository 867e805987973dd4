"""Where samples come from: the :class:`SampleSource` protocol and the real :class:`FeatureSource`.

The builder depends only on the protocol, so tests inject a fake. A source is a small picklable
object that travels to worker processes; ``open_log`` runs there, once per log and shard.
Its ``fingerprint`` keys the cache: anything that changes what a sample holds (feature params,
feature or reader code, the codec) changes it, and the builder then reuses nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pluto_dvc.cache.codec import CODEC
from pluto_dvc.cache.digests import file_digests
from pluto_dvc.params import FeatureParams, WorkerParams

# Packages whose code decides what a sample holds (their sources are hashed into the fingerprint).
CODE_PACKAGES = ("pluto_dvc.features", "pluto_dvc.nuplan")


class LogSamples(Protocol):
    """One opened log."""

    def frame_index(self, token: str) -> int:
        """Frame of a 16-hex scenario token; KeyError when the log has no such frame."""

    def build(self, frame_index: int) -> Mapping[str, np.ndarray]:
        """The flat feature dict of one scenario; raises one of ``invalid_errors`` if invalid."""


class SampleSource(Protocol):
    invalid_errors: tuple[type[BaseException], ...]  # "invalid sample": recorded, never retried

    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """JSON-able facts recorded in the manifest (deterministic)."""

    def log_identities(self, log_paths: Sequence[str], worker: WorkerParams) -> dict[str, str]:
        """Content identity of each log (``log_path`` as in the selection)."""

    def open_log(self, log_path: str, log_name: str) -> LogSamples: ...


def features_hash(features: FeatureParams) -> str:
    """SHA-256 of the feature params (each changes samples; the layout is in ``cache.*``)."""
    content = features.model_dump(mode="json")
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def code_hash(packages: Sequence[str] = CODE_PACKAGES) -> str:
    """SHA-256 over the ``*.py`` sources of ``packages`` (relative path + bytes, sorted)."""
    import importlib

    h = hashlib.sha256()
    for name in packages:
        root = Path(importlib.import_module(name).__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(f"{name}/{path.relative_to(root).as_posix()}\n".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def built_by_current_code(meta: Mapping[str, Any], features: FeatureParams) -> bool:
    """True when a cache's manifest meta says it was built with ``features`` and the current
    feature code (byte-identical sources); False means "may differ", not "differs"."""
    source = meta.get("source") or {}
    return (
        source.get("features_hash") == features_hash(features)
        and source.get("code_hash") == code_hash()
    )


class _FeatureLog:
    def __init__(self, builder: Any, tokens: np.ndarray):
        from pluto_dvc.nuplan.log_schema import tokens_hex

        self._builder = builder
        self._index = {t: i for i, t in enumerate(tokens_hex(tokens).tolist())}

    def frame_index(self, token: str) -> int:
        return self._index[token]

    def build(self, frame_index: int) -> Mapping[str, np.ndarray]:
        return self._builder.build(frame_index)


_LAST_MAP: list[tuple[str, str]] = []  # per process: (maps_root, location) of the map in memory


def _load_map(maps_root: str, location: str) -> Any:
    """The map of a location; the previous one is dropped first (shards are one map each, so a
    worker holds one map at a time, which bounds its memory)."""
    from pluto_dvc.nuplan.map_reader import MapsRoot, clear_map_cache

    if _LAST_MAP and _LAST_MAP[0] != (maps_root, location):
        clear_map_cache()
        _LAST_MAP.clear()
    nuplan_map = MapsRoot(maps_root).load(location)
    _LAST_MAP[:] = [(maps_root, location)]
    return nuplan_map


@dataclass(frozen=True)
class FeatureSource:
    """The PLUTO feature builder over nuPlan logs under ``data_root`` and maps under ``maps_root``.

    ``digest_state``: optional JSON file caching log digests between runs (see ``digests``).
    ``probe_digest``: the feature probe's digest of what the code outputs (see ``probe``); when
    given it stands for the code in the fingerprint, else the hash of the code's sources does.
    """

    features: FeatureParams
    data_root: str
    maps_root: str
    digest_state: str = ""
    probe_digest: str = ""

    @property
    def invalid_errors(self) -> tuple[type[BaseException], ...]:
        from pluto_dvc.features import FeatureError

        return (FeatureError,)

    def fingerprint(self) -> str:
        code = f"probe:{self.probe_digest}" if self.probe_digest else f"code:{code_hash()}"
        parts = f"{CODEC}\n{features_hash(self.features)}\n{code}"
        return hashlib.sha256(parts.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        content = self.features.model_dump(mode="json")
        return {
            "builder": "pluto_dvc.features.LogFeatureBuilder",
            "features": content,
            "features_hash": features_hash(self.features),
            "code_hash": code_hash(),
            "probe_digest": self.probe_digest,
        }

    def log_identities(self, log_paths: Sequence[str], worker: WorkerParams) -> dict[str, str]:
        files = {p: Path(self.data_root) / p for p in log_paths}
        state = Path(self.digest_state) if self.digest_state else None
        digests = file_digests(list(files.values()), worker, state)
        return {p: digests[f] for p, f in files.items()}

    def open_log(self, log_path: str, log_name: str) -> LogSamples:
        from pluto_dvc.features import LogFeatureBuilder
        from pluto_dvc.nuplan.log_reader import load_log

        log = load_log(Path(self.data_root) / log_path)
        nuplan_map = _load_map(self.maps_root, log.meta.location)
        return _FeatureLog(LogFeatureBuilder(self.features, log, nuplan_map), log.clock.token)
