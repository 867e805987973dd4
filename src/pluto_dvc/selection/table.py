"""The compact candidate table: every candidate of every log as a few numpy columns.

Rows are in log order (logs sorted by name) then timestamp order, the order of the devkit's
per-type scenario lists. About 20 bytes per candidate; no per-scenario Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pluto_dvc.nuplan.log_schema import UNKNOWN_SCENARIO_TYPE
from pluto_dvc.selection.candidates import LogCandidates


@dataclass
class LogInfo:
    """Per-log columns (L logs, in input order): names, maps, paths relative to the data root."""

    log_name: list[str]
    map_name: list[str]
    rel_path: list[str]
    path: list[str]


@dataclass
class CandidateTable:
    """M candidates.

    log: (M,) int32 row of ``logs``. token: (M,) uint64 (order = hex order).
    timestamp_us: (M,) int64. type_code: (M,) int32 index into ``type_names`` (sorted names).
    """

    logs: LogInfo
    log: np.ndarray
    token: np.ndarray
    timestamp_us: np.ndarray
    type_code: np.ndarray
    type_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.token.shape[0])

    @property
    def unknown_code(self) -> int | None:
        names = self.type_names
        return names.index(UNKNOWN_SCENARIO_TYPE) if UNKNOWN_SCENARIO_TYPE in names else None

    def take(self, rows: np.ndarray) -> CandidateTable:
        """The table restricted to ``rows`` (in that order)."""
        return CandidateTable(
            logs=self.logs,
            log=self.log[rows],
            token=self.token[rows],
            timestamp_us=self.timestamp_us[rows],
            type_code=self.type_code[rows],
            type_names=self.type_names,
        )


class TableBuilder:
    """Collects per-log results as they stream in (in log order) into one table."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.parts: list[LogCandidates] = []
        self.names: set[str] = set()

    def add(self, part: LogCandidates) -> None:
        self.names.update(part.type_names)
        self.parts.append(part)

    def extend(self, parts: Iterable[LogCandidates]) -> None:
        for part in parts:
            self.add(part)

    def build(self) -> CandidateTable:
        type_names = tuple(sorted(self.names))
        lookup = {name: code for code, name in enumerate(type_names)}
        codes, logs = [], []
        for i, part in enumerate(self.parts):
            remap = np.array([lookup[n] for n in part.type_names], dtype=np.int32)
            codes.append(remap[part.type_code] if len(part) else np.zeros(0, np.int32))
            logs.append(np.full(len(part), i, dtype=np.int32))
        parts = self.parts
        info = LogInfo(
            log_name=[p.log_name for p in parts],
            map_name=[p.map_name for p in parts],
            rel_path=[p.rel_path for p in parts],
            path=list(self.paths),
        )

        def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

        table = CandidateTable(
            logs=info,
            log=cat(logs, np.int32),
            token=cat([p.token for p in parts], np.uint64),
            timestamp_us=cat([p.timestamp_us for p in parts], np.int64),
            type_code=cat(codes, np.int32),
            type_names=type_names,
        )
        self.parts = []  # the table owns the data now
        return table
