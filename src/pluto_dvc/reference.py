"""Reference lists shipped as package data: nuPlan scenario types, official log splits, Val14."""

from __future__ import annotations

from functools import cache
from importlib import resources


def _lines(name: str) -> tuple[str, ...]:
    text = resources.files("pluto_dvc.resources").joinpath(name).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@cache
def scenario_types() -> tuple[str, ...]:
    """The 73 scenario types of nuPlan's scenario mapping (plus nothing else; 'unknown' is separate)."""
    return _lines("nuplan_scenario_types.txt")


@cache
def val14_scenario_types() -> tuple[str, ...]:
    return _lines("val14_scenario_types.txt")


@cache
def val14_scenario_tokens() -> tuple[str, ...]:
    return _lines("val14_scenario_tokens.txt")


@cache
def official_log_split(part: str) -> tuple[str, ...]:
    """nuPlan's official log names of ``part`` ('train', 'val' or 'test')."""
    if part not in ("train", "val", "test"):
        raise ValueError(f"unknown split part {part!r}; expected train, val or test")
    return _lines(f"nuplan_log_splits/{part}.txt")
