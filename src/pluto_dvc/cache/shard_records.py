"""Typed records of a cache build: the scenario rows a shard task gets and the shard footer.

A footer is stored as JSON in its shard (``ShardFooter.to_json`` / ``from_json``: dicts only at
that boundary). JSON form::

    {"format": "pluto-dvc-shard/1", "codec": ..., "fingerprint": ..., "spec": ...,
     "logs": {log_name: content identity},
     "samples": {"log_name": [...], "token": [...], "scenario_type": [...],
                 "offset": [int], "length": [int], "crc32": [int]},
     "failures": {"log_name": [...], "token": [...], "scenario_type": [...],
                  "kind": [...], "reason": [...]}}

Sample rows are in shard order; ``offset`` / ``length`` are bytes in the shard, ``crc32`` that of
the blob. A failure's ``kind`` is ``invalid`` (the source rejected the sample), ``error`` (an
unexpected exception) or ``log`` (the log or its map could not be opened).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

SHARD_FORMAT = "pluto-dvc-shard/1"
RETRYABLE_KINDS = frozenset({"error", "log"})


class ScenarioRow(NamedTuple):
    """One scenario of the sorted selection, as a shard task gets it."""

    log_name: str
    token: str  # 16 hex
    scenario_type: str
    log_path: str  # the .db relative to the data root

    @property
    def key(self) -> tuple[str, str]:
        """(log_name, token): a scenario's identity across builds."""
        return self.log_name, self.token


class _Columns:
    """Columns of equal length, one list per field, rows in shard order."""

    token: list[str]

    def append(self, *values: Any) -> None:
        for f, value in zip(fields(self), values, strict=True):  # type: ignore[arg-type]
            getattr(self, f.name).append(value)

    def __len__(self) -> int:
        return len(self.token)


@dataclass
class SampleRows(_Columns):
    """The samples a shard holds."""

    log_name: list[str] = field(default_factory=list)
    token: list[str] = field(default_factory=list)
    scenario_type: list[str] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    crc32: list[int] = field(default_factory=list)

    def add(self, row: ScenarioRow, offset: int, length: int, crc32: int) -> None:
        self.append(row.log_name, row.token, row.scenario_type, offset, length, crc32)


@dataclass
class FailureRows(_Columns):
    """The scenarios of a shard that have no sample, and why."""

    log_name: list[str] = field(default_factory=list)
    token: list[str] = field(default_factory=list)
    scenario_type: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)

    def add(self, row: ScenarioRow, kind: str, reason: str) -> None:
        self.append(row.log_name, row.token, row.scenario_type, kind, reason)


SAMPLE_COLUMNS = tuple(f.name for f in fields(SampleRows))
FAILURE_COLUMNS = tuple(f.name for f in fields(FailureRows))
_INT_COLUMNS = ("offset", "length", "crc32")


@dataclass
class ShardFooter:
    """What one shard holds: its samples and failures, for which features and log files."""

    format: str
    codec: str
    fingerprint: str  # of the sample source (features and their code)
    spec: str  # hash of the fingerprint, the rows and the log identities: the shard's plan
    logs: dict[str, str]  # log_name -> content identity of its file
    samples: SampleRows
    failures: FailureRows

    @property
    def retryable(self) -> bool:
        """True when a failure of the shard may pass on another try (not ``invalid``)."""
        return bool(RETRYABLE_KINDS.intersection(self.failures.kind))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "codec": self.codec,
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "logs": self.logs,
            "samples": {c: getattr(self.samples, c) for c in SAMPLE_COLUMNS},
            "failures": {c: getattr(self.failures, c) for c in FAILURE_COLUMNS},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardFooter:
        """The footer of a shard's JSON; ValueError saying what is malformed."""
        problem = footer_problem(data)
        if problem:
            raise ValueError(problem)
        return cls(
            format=data["format"],
            codec=str(data.get("codec", "")),
            fingerprint=data["fingerprint"],
            spec=data["spec"],
            logs=dict(data["logs"]),
            samples=SampleRows(**{c: list(data["samples"][c]) for c in SAMPLE_COLUMNS}),
            failures=FailureRows(**{c: list(data["failures"][c]) for c in FAILURE_COLUMNS}),
        )


def footer_problem(footer: Mapping[str, Any]) -> str | None:
    """What makes a shard footer's JSON unusable (missing or malformed parts), or None."""
    for key, kind in (("format", str), ("fingerprint", str), ("spec", str), ("logs", dict)):
        if not isinstance(footer.get(key), kind):
            return f"footer has no valid {key!r}"
    for part, columns, ints in (
        ("samples", SAMPLE_COLUMNS, _INT_COLUMNS),
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
