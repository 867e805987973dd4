"""The resolved scenario filter: presets expanded, explicit params applied, defaults filled.

``resolve_filter(FilterParams) -> ScenarioFilter``. Every field keeps nuPlan's name and meaning
(nuplan-devkit ``ScenarioFilter``); ``None`` means the filter is not applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pluto_dvc.errors import ParamsError
from pluto_dvc.filter_presets import PRESETS
from pluto_dvc.params import FilterParams

DEFAULT_SPEED_NOISE_TOLERANCE = 0.1  # m/s, the devkit's value when speed_noise_tolerance is null

# Values of the switches when neither params nor the preset set them: Pluto trains on single-frame
# (expanded) scenarios with a valid mission goal, in token order.
DEFAULT_SWITCHES: dict[str, bool] = {
    "expand_scenarios": True,
    "remove_invalid_goals": True,
    "shuffle": False,
}


@dataclass(frozen=True)
class ScenarioFilter:
    """nuPlan's scenario filter with every value decided (``None`` = filter not applied).

    Lists are sorted tuples; tokens are lowercase 16-hex strings; ``limit_total_scenarios`` is an
    int count or a float fraction in (0, 1); distances in m, speeds in m/s, times in s.
    """

    preset: str
    scenario_types: tuple[str, ...] | None
    scenario_tokens: tuple[str, ...] | None
    log_names: tuple[str, ...] | None
    map_names: tuple[str, ...] | None
    num_scenarios_per_type: int | None
    limit_total_scenarios: int | float | None
    timestamp_threshold_s: float | None
    ego_displacement_minimum_m: float | None
    ego_start_speed_threshold: float | None
    ego_stop_speed_threshold: float | None
    speed_noise_tolerance: float
    expand_scenarios: bool
    remove_invalid_goals: bool
    shuffle: bool
    seed: int
    token_set_path: str | None
    fraction_in_token_set_threshold: float | None
    ego_route_radius: float | None

    @property
    def needs_ego(self) -> bool:
        """Whether any filter needs the ego trajectory or the map (the second, per-log pass)."""
        return any(
            v is not None
            for v in (
                self.ego_displacement_minimum_m,
                self.ego_start_speed_threshold,
                self.ego_stop_speed_threshold,
                self.token_set_path,
                self.ego_route_radius,
            )
        )

    def describe(self) -> dict[str, Any]:
        """JSON-friendly settings; long token lists are summarised by their count."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "scenario_tokens" and value is not None:
                value = f"{len(value)} tokens"
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def resolve_filter(params: FilterParams) -> ScenarioFilter:
    """Expand ``params.preset`` and apply every explicit (non-null) field over it."""
    values: dict[str, Any] = {**DEFAULT_SWITCHES, **PRESETS[params.preset]()}
    for name, value in params.model_dump().items():
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    resolved = {f.name: values.get(f.name) for f in fields(ScenarioFilter)}
    if resolved["speed_noise_tolerance"] is None:
        resolved["speed_noise_tolerance"] = DEFAULT_SPEED_NOISE_TOLERANCE
    return ScenarioFilter(**resolved)


def load_token_set(path: str | Path) -> np.ndarray:
    """The token set file (JSON list of 16-hex lidar_pc tokens) as sorted unique (K,) uint64 keys.

    Raises ParamsError naming the file when it is missing, not JSON, not a non-empty list of
    strings, or holds a string that is not a token.
    """
    path = Path(path)
    where = f"filter.token_set_path: {path}"
    if not path.is_file():
        raise ParamsError(f"{where} does not exist; it must be a JSON list of lidar_pc tokens")
    try:
        tokens = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{where} is not valid JSON ({exc}); expected a list of tokens") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        got = type(tokens).__name__
        if isinstance(tokens, list):
            got = (
                f"a list holding {type(next(t for t in tokens if not isinstance(t, str))).__name__}"
            )
        raise ParamsError(
            f"{where} must hold a JSON list of strings (16-hex lidar_pc tokens), got {got}"
        )
    if not tokens:
        raise ParamsError(f"{where} is an empty list: no scenario could pass the filter")
    try:
        raw = b"".join(bytes.fromhex(t) if len(t) == 16 else b"x" for t in tokens)
    except ValueError:
        raw = b""
    if len(raw) != 8 * len(tokens):
        bad = next(t for t in tokens if len(t) != 16 or not _is_hex(t))
        raise ParamsError(f"{where}: {bad!r} is not a token (16 hex characters)")
    keys = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    return np.unique(keys)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
