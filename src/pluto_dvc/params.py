"""The typed schema of params.yaml: one source of truth for every setting and its default.

``load_params(path, overrides)`` validates the file: an unknown key, a wrong type or an out-of-range
value raises :class:`ParamsError` naming the key path (``synthetic.num_logs``) and what was expected.
Each DVC stage reads only its own section, so changing ``train.*`` never invalidates the cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pluto_dvc.errors import ParamsError
from pluto_dvc.nuplan.locations import LOCATIONS

DEFAULT_PARAMS_FILE = "params.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_locations(value: list[str]) -> list[str]:
    unknown = [v for v in value if v not in LOCATIONS]
    if unknown:
        raise ValueError(f"unknown map location(s) {unknown}; valid: {sorted(LOCATIONS)}")
    if len(set(value)) != len(value):
        raise ValueError(f"map locations listed twice: {value}")
    return value


class SyntheticParams(_Section):
    """The synthetic nuPlan dataset written by the ``synthesize`` stage."""

    seed: int = Field(0, ge=0, description="seed of the whole synthetic world")
    output_dir: str = Field("data/nuplan-synthetic", min_length=1)
    split: str = Field("mini", pattern=r"^[A-Za-z0-9_\-]+$", description="splits/<split>/*.db")
    num_logs: int = Field(8, ge=1, le=10_000)
    minutes_per_log: float = Field(2.5, gt=0.0, le=60.0)
    log_locations: list[str] = Field(
        default_factory=lambda: ["us-nv-las-vegas-strip", "us-pa-pittsburgh-hazelwood"],
        min_length=1,
        description="locations the logs are spread over (round robin); all four maps are written",
    )
    map_size: Literal["tiny", "default"] = "default"
    num_vehicles: int = Field(40, ge=0, le=500, description="moving vehicles around the ego")
    num_pedestrians: int = Field(12, ge=0, le=500)
    num_cyclists: int = Field(4, ge=0, le=200)

    _locations = field_validator("log_locations")(_check_locations)


class DataParams(_Section):
    """Where the nuPlan logs and maps are. Empty roots mean the synthetic dataset.

    ``NUPLAN_DATA_ROOT`` / ``NUPLAN_MAPS_ROOT`` override empty roots. Logs are read from
    ``<nuplan_root>/<db_version>/splits/<split>/*.db``.
    """

    nuplan_root: str = ""
    maps_root: str = ""
    db_version: str = "nuplan-v1.1"
    split: str = Field("mini", pattern=r"^[A-Za-z0-9_\-]+$")


class WorkerParams(_Section):
    """How per-log work is executed. Changes no output, so no stage depends on it."""

    kind: Literal["sequential", "processes", "ray"] = "processes"
    num_workers: int = Field(0, ge=0, description="0 = one per CPU core")
    ray_address: str = Field("", description="'' = start Ray locally; else an existing cluster")


class Params(_Section):
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    data: DataParams = Field(default_factory=DataParams)
    worker: WorkerParams = Field(default_factory=WorkerParams)


def _describe_error(err: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "<top level>"
    if err["type"] == "extra_forbidden":
        parent: type[BaseModel] = Params
        for part in err["loc"][:-1]:
            parent = parent.model_fields[str(part)].annotation  # type: ignore[assignment]
        valid = ", ".join(parent.model_fields)
        return f"unknown key '{path}' (valid keys here: {valid})"
    return f"'{path}': {err['msg']} (got {err.get('input')!r})"


def parse_params(raw: dict[str, Any] | None, source: str = DEFAULT_PARAMS_FILE) -> Params:
    """Validate a params mapping; every problem is listed in one ParamsError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors()]
        raise ParamsError(f"{source} is invalid:\n  " + "\n  ".join(lines)) from None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested mapping, in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ParamsError(f"override {assignment!r} is not of the form key.path=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {assignment!r}: '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(text)


def load_params(path: str | os.PathLike = DEFAULT_PARAMS_FILE, overrides: list[str] = ()) -> Params:
    """Read and validate params.yaml (a missing file means all defaults), then apply overrides."""
    path = Path(path)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    return parse_params(raw, str(path))


def params_to_yaml(params: Params) -> str:
    """The resolved parameters as YAML, defaults included."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
