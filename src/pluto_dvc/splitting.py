"""The log-level train / val / test split of the selected scenarios (``split`` stage).

No log is in two parts. Two methods:
- **lists** (``split.log_lists``: ``nuplan`` = nuPlan's official lists shipped with the package,
  or a folder holding ``train.txt``, ``val.txt``, ``test.txt``, one log name per line): a part is
  the selected logs named in its list; selected logs in no list are left out (and counted).
- **ratios** (``split.log_lists: ''``): logs are shuffled with ``split.seed`` and the parts get
  ``round(ratio * L)`` logs (largest remainder, at least one each). With ``balance_types``, the
  rarest scenario types are placed first: for each type (fewest logs first) every part that lacks
  it and still has room takes the log holding it that covers most of the part's missing types
  (val and test first, or train first for a type in fewer than three logs); the rest fill in
  shuffled order. Balancing is best effort: the summary lists the types a part still misses.
A split that leaves a part empty is refused with the reason and what to change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.errors import ParamsError
from pluto_dvc.params import SplitParams
from pluto_dvc.reference import official_log_split

PARTS = ("train", "val", "test")
SPLITS_PATH = Path("data/splits.json")
SPLIT_SUMMARY_PATH = Path("data/splits_summary.json")


@dataclass
class LogStats:
    """Per selected log (L logs, sorted by name): scenarios per type.

    names: (L,) log names. counts: {log name: {scenario type: scenarios}}.
    """

    names: list[str]
    counts: dict[str, dict[str, int]]

    @classmethod
    def from_columns(cls, log_name: np.ndarray, scenario_type: np.ndarray) -> LogStats:
        """From the ``log_name`` / ``scenario_type`` columns of ``scenarios.parquet``."""
        pairs, n = np.unique(
            np.stack([np.asarray(log_name, dtype=str), np.asarray(scenario_type, dtype=str)]),
            axis=1,
            return_counts=True,
        )
        counts: dict[str, dict[str, int]] = {}
        for (log, typ), c in zip(pairs.T, n, strict=True):
            counts.setdefault(str(log), {})[str(typ)] = int(c)
        return cls(names=sorted(counts), counts=counts)

    def types_of(self, log: str) -> set[str]:
        return set(self.counts[log])


@dataclass
class LogSplit:
    """parts: {part: sorted log names}; unassigned: selected logs in no part (list method)."""

    parts: dict[str, list[str]]
    method: str
    unassigned: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return {part: self.parts[part] for part in PARTS}


def split_logs(stats: LogStats, params: SplitParams) -> LogSplit:
    """Split the selected logs; ParamsError when a part would be empty."""
    if params.log_lists:
        split = _from_lists(stats, params.log_lists)
    else:
        split = _from_ratios(stats, params)
    empty = [p for p in PARTS if not split.parts[p]]
    if empty:
        raise ParamsError(_empty_part_message(empty[0], stats, split, params))
    return split


# ------------------------------------------------------------------------------------- lists


def read_log_list(path: Path) -> list[str]:
    """Log names of a list file: one per line; blank lines and ``#`` comments are ignored."""
    if not path.is_file():
        raise ParamsError(
            f"split.log_lists: {path} does not exist; the folder must hold train.txt, val.txt "
            "and test.txt (one log name per line), or use 'nuplan' or '' (seeded ratios)"
        )
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.removesuffix(".db"))
    return names


def _lists(source: str) -> dict[str, list[str]]:
    if source == "nuplan":
        return {part: list(official_log_split(part)) for part in PARTS}
    folder = Path(os.path.expanduser(source))
    return {part: read_log_list(folder / f"{part}.txt") for part in PARTS}


def _from_lists(stats: LogStats, source: str) -> LogSplit:
    lists = _lists(source)
    owner: dict[str, str] = {}
    for part in PARTS:
        for name in lists[part]:
            if owner.get(name, part) != part:
                raise ParamsError(
                    f"split.log_lists ({source}): log {name} is in both the {owner[name]} and the "
                    f"{part} list; a log may be in one part only"
                )
            owner[name] = part
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    unassigned = []
    for name in stats.names:
        if name in owner:
            parts[owner[name]].append(name)
        else:
            unassigned.append(name)
    method = "nuplan" if source == "nuplan" else f"lists:{source}"
    return LogSplit(parts=parts, method=method, unassigned=unassigned)


# ------------------------------------------------------------------------------------ ratios


def part_sizes(num_logs: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Logs per part: floor(ratio * L) plus the remainder by largest fraction, >= 1 each."""
    raw = {p: ratios[p] * num_logs for p in PARTS}
    sizes = {p: int(np.floor(raw[p])) for p in PARTS}
    by_fraction = sorted(PARTS, key=lambda p: (-(raw[p] - sizes[p]), PARTS.index(p)))
    for p in by_fraction[: num_logs - sum(sizes.values())]:
        sizes[p] += 1
    for p in PARTS:
        while sizes[p] == 0:
            donor = max(PARTS, key=lambda q: (sizes[q], -PARTS.index(q)))
            if sizes[donor] <= 1:
                break
            sizes[donor] -= 1
            sizes[p] += 1
    return sizes


def _from_ratios(stats: LogStats, params: SplitParams) -> LogSplit:
    names = stats.names
    if len(names) < len(PARTS):
        return LogSplit(parts={p: names[i : i + 1] for i, p in enumerate(PARTS)}, method="ratios")
    rng = np.random.default_rng(params.seed)
    order = [names[i] for i in rng.permutation(len(names))]
    room = part_sizes(len(names), {"train": params.train, "val": params.val, "test": params.test})
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    part_types: dict[str, set[str]] = {p: set() for p in PARTS}
    free = dict.fromkeys(order)  # insertion-ordered set of unassigned logs

    def assign(log: str, part: str) -> None:
        parts[part].append(log)
        part_types[part] |= stats.types_of(log)
        room[part] -= 1
        del free[log]

    if params.balance_types:
        logs_with: dict[str, list[str]] = {}
        for log in order:
            for typ in sorted(stats.types_of(log)):
                logs_with.setdefault(typ, []).append(log)
        all_types = set(logs_with)
        for typ in sorted(logs_with, key=lambda t: (len(logs_with[t]), t)):
            # a type in fewer logs than parts goes to train first; else the small parts first
            visit = PARTS if len(logs_with[typ]) < len(PARTS) else ("val", "test", "train")
            for part in visit:
                if typ in part_types[part] or room[part] == 0:
                    continue
                missing = all_types - part_types[part]
                holders = [g for g in logs_with[typ] if g in free]
                if holders:  # the holder covering most missing types, first in shuffled order
                    assign(max(holders, key=lambda g: len(stats.types_of(g) & missing)), part)
    for part in PARTS:
        while room[part] > 0:
            assign(next(iter(free)), part)
    return LogSplit(parts={p: sorted(parts[p]) for p in PARTS}, method="ratios")


# ----------------------------------------------------------------------------------- summary


def _empty_part_message(part: str, stats: LogStats, split: LogSplit, params: SplitParams) -> str:
    n = len(stats.names)
    if not params.log_lists:
        return (
            f"the split would leave '{part}' empty: the selection has only {n} log(s) and a "
            f"log-level train/val/test split needs at least {len(PARTS)} (no log is in two "
            "parts). Select more logs (more synthetic.num_logs, or relax filter.log_names / "
            "filter.map_names / filter.limit_total_scenarios)"
        )
    return (
        f"the split would leave '{part}' empty: none of the {n} selected logs is in the {part} "
        f"list of split.log_lists ({params.log_lists}); "
        f"{len(split.unassigned)} selected log(s) are in no list. Select logs named in the lists "
        "(filter.log_names), or use seeded ratios with split.log_lists: ''"
    )


def summarize(split: LogSplit, stats: LogStats, params: SplitParams) -> dict[str, Any]:
    """Counts per part: logs, scenarios, scenarios per type, types missing from the part."""
    all_types = sorted({t for c in stats.counts.values() for t in c})
    out: dict[str, Any] = {"method": split.method, "seed": params.seed}
    out["num_logs"] = {p: len(split.parts[p]) for p in PARTS}
    per_type: dict[str, dict[str, int]] = {}
    for p in PARTS:
        totals: dict[str, int] = {}
        for log in split.parts[p]:
            for typ, c in stats.counts[log].items():
                totals[typ] = totals.get(typ, 0) + c
        per_type[p] = dict(sorted(totals.items()))
    out["num_scenarios"] = {p: sum(per_type[p].values()) for p in PARTS}
    out["per_type"] = per_type
    out["missing_types"] = {p: [t for t in all_types if t not in per_type[p]] for p in PARTS}
    out["unassigned_logs"] = len(split.unassigned)
    out["unassigned_scenarios"] = sum(sum(stats.counts[g].values()) for g in split.unassigned)
    return out


def run_split(
    params: SplitParams,
    scenarios_path: str | Path,
    splits_path: str | Path = SPLITS_PATH,
    summary_path: str | Path = SPLIT_SUMMARY_PATH,
) -> tuple[LogSplit, dict[str, Any]]:
    """Read the selection, split its logs, write ``splits.json`` and the summary atomically."""
    from pluto_dvc.io import write_json
    from pluto_dvc.selection.output import read_scenarios

    table = read_scenarios(scenarios_path)
    stats = LogStats.from_columns(
        table.column("log_name").to_numpy(zero_copy_only=False),
        table.column("scenario_type").to_numpy(zero_copy_only=False),
    )
    split = split_logs(stats, params)
    summary = summarize(split, stats, params)
    write_json(splits_path, split.to_json())
    write_json(summary_path, summary)
    return split, summary


def read_splits(path: str | Path = SPLITS_PATH) -> dict[str, list[str]]:
    """The log names of each part from ``splits.json`` (written by :func:`run_split`).

    Raises DataError naming the file when it is missing, not JSON, lacks a part, or puts a log in
    two parts.
    """
    import json

    from pluto_dvc.errors import DataError

    path = Path(path)
    fix = "run the split stage (`dvc repro split` or `pluto-dvc split`)"
    if not path.is_file():
        raise DataError(f"split file {path} does not exist; {fix}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"split file {path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(raw, dict):
        raise DataError(f"split file {path} must hold an object {{part: [log names]}}; {fix}")
    parts: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for part in PARTS:
        names = raw.get(part)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"split file {path}: '{part}' must be a list of log names; {fix}")
        for name in names:
            if owner.setdefault(name, part) != part:
                raise DataError(
                    f"split file {path}: log {name} is in both '{owner[name]}' and '{part}'; {fix}"
                )
        parts[part] = list(names)
    return parts
