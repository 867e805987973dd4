"""The typed schema of params.yaml: one source of truth for every setting and its default.

``load_params(path, overrides)`` validates the file: an unknown key, a wrong type or an out-of-range
value raises :class:`ParamsError` naming the key path (``synthetic.num_logs``) and what was expected.
Each DVC stage reads only its own section, so changing ``train.*`` never invalidates the cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pluto_dvc.errors import ParamsError
from pluto_dvc.filter_presets import PRESETS
from pluto_dvc.nuplan.locations import LOCATIONS
from pluto_dvc.nuplan.log_schema import LOG_FRAME_S
from pluto_dvc.reference import scenario_types as _known_scenario_types

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


FILTER_PRESETS = tuple(PRESETS)
_HEX16 = re.compile(r"[0-9a-f]{16}")


def _check_scenario_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    valid = ("unknown", *_known_scenario_types())
    unknown = [v for v in value if v not in valid]
    if unknown:
        raise ValueError(
            f"unknown scenario type(s) {unknown}; valid types are: {', '.join(sorted(valid))}"
        )
    return sorted(set(value))


def _check_tokens(value: Any) -> Any:
    """Tokens are 16 hex characters; YAML reads an all-digit token as a number: say so."""
    if value is None or not isinstance(value, list):
        return value
    out = []
    for v in value:
        if not isinstance(v, str):
            raise ValueError(
                f"token {v!r} is a {type(v).__name__}, not a string: quote tokens in YAML "
                "(e.g. '1001304290285954'), a nuPlan token is 16 hex characters"
            )
        if _HEX16.fullmatch(v.lower()) is None:
            raise ValueError(
                f"token {v!r} is not 16 hex characters; a nuPlan scenario token is the lidar_pc "
                "token, e.g. 'e3e2933994835eba'"
            )
        out.append(v.lower())
    return sorted(set(out))


class FilterParams(_Section):
    """nuPlan's scenario filter, applied by the ``select_scenarios`` stage.

    ``null`` means "not applied" (or, where ``preset`` sets the field, the preset's value); an
    explicit value always overrides the preset. Semantics and order: ``pluto_dvc.selection``.
    """

    preset: Literal[FILTER_PRESETS] = Field(  # type: ignore[valid-type]
        "", description="'' | tiny_50 | one_million | val14 | challenge_14"
    )
    scenario_types: list[str] | None = Field(None, min_length=1)
    scenario_tokens: list[str] | None = Field(None, min_length=1)
    log_names: list[str] | None = Field(None, min_length=1)
    map_names: list[str] | None = Field(None, min_length=1)
    num_scenarios_per_type: int | None = Field(None, ge=1)
    limit_total_scenarios: StrictInt | StrictFloat | None = None
    timestamp_threshold_s: float | None = Field(None, ge=0.0)
    ego_displacement_minimum_m: float | None = Field(None, ge=0.0)
    ego_start_speed_threshold: float | None = Field(None, ge=0.0)
    ego_stop_speed_threshold: float | None = Field(None, ge=0.0)
    speed_noise_tolerance: float | None = Field(None, ge=0.0, description="null = 0.1 m/s")
    expand_scenarios: bool | None = None
    remove_invalid_goals: bool | None = None
    shuffle: bool | None = None
    seed: int = Field(0, ge=0, description="seed of random sampling and of the final shuffle")
    token_set_path: str | None = Field(None, min_length=1)
    fraction_in_token_set_threshold: float | None = Field(None, ge=0.0, le=1.0)
    ego_route_radius: float | None = Field(None, gt=0.0)

    _types = field_validator("scenario_types")(_check_scenario_types)
    _tokens = field_validator("scenario_tokens", mode="before")(_check_tokens)

    @field_validator("map_names")
    @classmethod
    def _maps(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_locations(value)

    @field_validator("log_names")
    @classmethod
    def _logs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [v.removesuffix(".db") for v in value]
        if any(not n or "/" in n for n in names):
            raise ValueError("log names are .db file stems such as 2021.07.16.20.45.29_veh-35_...")
        return sorted(set(names))

    @field_validator("limit_total_scenarios")
    @classmethod
    def _limit(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"an int limit is a scenario count and must be >= 1, got {value}")
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError(
                f"a float limit is a fraction of the scenarios and must be in (0, 1), got {value}"
                " (write an int such as 1000 for a count)"
            )
        return value

    @model_validator(mode="after")
    def _token_set(self) -> FilterParams:
        if (self.token_set_path is None) != (self.fraction_in_token_set_threshold is None):
            raise ValueError(
                "token_set_path and fraction_in_token_set_threshold go together: set both "
                "(the filter keeps scenarios whose fraction of tokens in the set exceeds the "
                "threshold) or neither"
            )
        return self


class SplitParams(_Section):
    """The log-level train / val / test split (``split`` stage)."""

    log_lists: str = Field(
        "", description="'' = seeded ratios; 'nuplan' = nuPlan's official lists; else a folder"
    )
    train: float = Field(0.7, ge=0.0, le=1.0)
    val: float = Field(0.15, ge=0.0, le=1.0)
    test: float = Field(0.15, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    balance_types: bool = Field(True, description="give every part the scenario types present")

    @model_validator(mode="after")
    def _ratios(self) -> SplitParams:
        ratios = {"train": self.train, "val": self.val, "test": self.test}
        empty = [k for k, v in ratios.items() if v == 0.0]
        if empty:
            raise ValueError(
                f"split.{empty[0]} is 0, which leaves that part empty: every part needs logs; "
                "give it a share such as 0.15 (the three ratios sum to 1)"
            )
        if abs(sum(ratios.values()) - 1.0) > 1e-6:
            raise ValueError(
                f"split.train + split.val + split.test must be 1, got {sum(ratios.values()):.6g}"
            )
        return self


class FeatureParams(_Section):
    """The PLUTO feature builder and the sharded feature cache (stage ``build_cache``).

    Distances in metres, times in seconds; the frame is the ego rear axle at the present step.
    """

    radius_m: float = Field(
        120.0,
        gt=0.0,
        le=500.0,
        description="half side of the map-polygon square; static-object radius (agents: no cut)",
    )
    history_horizon_s: float = Field(2.0, gt=0.0, le=10.0)
    future_horizon_s: float = Field(8.0, gt=0.0, le=20.0)
    sample_interval_s: float = Field(0.1, gt=0.0, le=1.0, description="multiple of 0.05 s")
    max_agents: int = Field(48, ge=1, le=512)
    max_static_objects: int = Field(32, ge=0, le=512)
    map_polyline_points: int = Field(20, ge=2, le=200, description="points per map polyline")
    build_reference_lines: bool = True
    reference_line_length_m: float = Field(120.0, gt=0.0, le=500.0)
    build_static_objects: bool = True
    build_cost_map: bool = True
    cost_map_size: int = Field(600, ge=16, le=2000, description="pixels per side")
    cost_map_resolution_m: float = Field(0.2, gt=0.0, le=2.0, description="metres per pixel")
    build_causal: bool = Field(
        True, description="PLUTO's causal keys: leading agents, red lights, free path, interaction"
    )

    @field_validator("sample_interval_s")
    @classmethod
    def _multiple_of_log_clock(cls, value: float) -> float:
        steps = value / LOG_FRAME_S
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"must be a multiple of the {LOG_FRAME_S} s log clock (e.g. 0.1)")
        return value


class CacheParams(_Section):
    """How the feature cache is laid out and when a build fails (stage ``build_cache``).

    Neither changes what a sample holds: changing them re-shards without recomputing samples.
    """

    samples_per_shard: int = Field(512, ge=1, le=100_000, description="scenarios per shard file")
    max_failure_ratio: float = Field(
        0.05, ge=0.0, le=1.0, description="the stage fails above this share of failed scenarios"
    )


class ModelParams(_Section):
    """The network (``pluto_dvc.model``): a preset and overrides of any ``ModelConfig`` field.

    Sizes that the data fixes (history and future steps, polyline and reference-line points)
    are read from the cache and cannot be overridden here."""

    preset: Literal["pluto", "small"] = Field(
        "small", description="pluto: the paper network (4.02 M params); small: CPU-sized default"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig fields, e.g. {dim: 96, num_modes: 12}"
    )

    @model_validator(mode="after")
    def _valid_config(self) -> ModelParams:
        from pluto_dvc.model.config import DATA_FIELDS, ModelConfig

        fixed = sorted(set(self.overrides) & set(DATA_FIELDS))
        if fixed:
            raise ValueError(
                f"{fixed} are fixed by the cache's feature layout (features.*), not set here"
            )
        try:
            ModelConfig.preset(self.preset, **self.overrides)
        except ParamsError as exc:
            raise ValueError(str(exc)) from None
        return self

    def config(self, cache: Any) -> Any:
        """The ``ModelConfig`` for ``cache`` (a cache directory, CacheDataset or its metadata)."""
        from pluto_dvc.model.config import ModelConfig

        return ModelConfig.for_cache(cache, preset=self.preset, **self.overrides)


NEGATIVE_KINDS = ("drop_leading", "drop_interacting", "red_light_to_green", "insert_leading")


class LossWeights(_Section):
    """The weight of each training loss term in the summed loss (the paper: 1 each)."""

    regression: float = Field(1.0, ge=0.0)
    classification: float = Field(1.0, ge=0.0)
    prediction: float = Field(1.0, ge=0.0)
    collision: float = Field(
        0.01,
        ge=0.0,
        description="the paper: 1. Averaged over its few positive terms, it outweighs the "
        "regression while a young network's plans leave the road: a short run then learns plans "
        "that stay put (weight 1) or turn their headings off the road (0.1); README, 'Training'",
    )
    ref_free: float = Field(1.0, ge=0.0)
    contrastive: float = Field(1.0, ge=0.0)


class TrainParams(_Section):
    """Training (stage ``train``): optimiser, schedule, loader, devices, contrastive augmentation.

    lr schedule per epoch: linear warm-up from 0 over ``warmup_epochs``, then cosine from ``lr`` to
    ``min_lr`` at ``epochs``. Weight decay applies to Linear / Conv / attention weights only.
    ``seed`` fixes initialisation, batch order, dropout and augmentation: the same params and data
    give the same final metrics on CPU (also after a resume).
    """

    epochs: int = Field(6, ge=1, le=10_000, description="CPU-budget default; the paper: 25")
    batch_size: int = Field(32, ge=1, le=4096, description="per device")
    lr: float = Field(3e-3, gt=0.0, le=1.0)
    min_lr: float = Field(1e-6, ge=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    warmup_epochs: int = Field(1, ge=0, description="the paper: 3")
    grad_clip: float = Field(5.0, ge=0.0, description="gradient-norm clip; 0 = off")
    seed: int = Field(0, ge=0)
    num_workers: int = Field(0, ge=0, le=256, description="loader worker processes per device")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "cpu"
    devices: int = Field(1, ge=1, le=1024)
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"] = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "64-true"] = "32-true"
    contrastive: bool = Field(False, description="contrastive imitation learning (CIL)")
    positive_probability: float = Field(
        1.0, ge=0.0, le=1.0, description="share of anchors that get a perturbed positive"
    )
    drop_non_interacting_probability: float = Field(
        0.5, ge=0.0, le=1.0, description="per positive: drop the agents that do not interact"
    )
    negative_kinds: list[Literal[NEGATIVE_KINDS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(NEGATIVE_KINDS), min_length=1
    )
    contrastive_temperature: float = Field(0.1, gt=0.0, le=10.0)
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    checkpoint_top_k: int = Field(5, ge=1, le=100, description="best checkpoints kept (val loss)")
    limit_train_batches: int | None = Field(
        40, ge=1, description="batches per epoch (CPU-budget default); null = all"
    )
    limit_val_batches: int | None = Field(8, ge=1, description="null = all")
    log_every_n_steps: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _schedule(self) -> TrainParams:
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr ({self.min_lr}) must not exceed train.lr ({self.lr})")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(
                f"train.warmup_epochs ({self.warmup_epochs}) must be below train.epochs "
                f"({self.epochs}): the cosine phase would never start"
            )
        return self


class EvaluateParams(_Section):
    """The ``evaluate`` stage: nuPlan's open-loop score (OLS), learning metrics, baselines and
    scene pictures. Thresholds default to the devkit's ``open_loop_boxes`` metrics."""

    split_part: Literal["train", "val", "test"] = Field(
        "test", description="which part of data/splits.json is evaluated"
    )
    scenario_types: list[str] | None = Field(None, min_length=1, description="null = all")
    scenarios_per_type: int | None = Field(
        4, ge=1, description="15 s scenarios kept per type (seeded choice); null = all"
    )
    seed: int = Field(0, ge=0, description="seed of the per-type scenario choice")
    min_separation_s: float = Field(
        15.0, ge=0.0, description="per type and log, chosen scenarios start this far apart"
    )
    scenario_duration_s: float = Field(15.0, gt=0.0, le=60.0)
    query_interval_s: float = Field(1.0, gt=0.0, le=15.0, description="planner queried every")
    comparison_interval_s: float = Field(1.0, gt=0.0, le=8.0, description="1 / frequency")
    comparison_horizons_s: list[float] = Field(default_factory=lambda: [3.0, 5.0, 8.0])
    max_average_l2_error_m: float = Field(8.0, gt=0.0)
    max_final_l2_error_m: float = Field(8.0, gt=0.0)
    max_average_heading_error_rad: float = Field(0.8, gt=0.0)
    max_final_heading_error_rad: float = Field(0.8, gt=0.0)
    miss_displacement_thresholds_m: list[float] = Field(default_factory=lambda: [6.0, 8.0, 16.0])
    max_miss_rate: float = Field(0.3, ge=0.0, le=1.0)
    learning_top_k: int = Field(6, ge=1, description="candidates of minADE / minFDE / miss rate")
    learning_miss_threshold_m: float = Field(2.0, gt=0.0)
    learning_max_samples: int | None = Field(
        2000, ge=1, description="cached samples of the part scored by the learning metrics"
    )
    batch_size: int = Field(16, ge=1, le=4096)
    num_pictures: int = Field(4, ge=0, le=1000, description="first scenarios, fixed names")
    num_worst_pictures: int = Field(4, ge=0, le=1000, description="lowest model OLS")
    picture_size_px: int = Field(800, ge=100, le=4000)
    picture_radius_m: float = Field(60.0, gt=0.0, le=500.0)
    picture_candidates: int = Field(6, ge=0, le=100, description="top candidates drawn")

    _types = field_validator("scenario_types")(_check_scenario_types)

    @model_validator(mode="after")
    def _horizons(self) -> EvaluateParams:
        horizons = self.comparison_horizons_s
        if not horizons or sorted(horizons) != horizons or len(set(horizons)) != len(horizons):
            raise ValueError(
                "comparison_horizons_s must be a non-empty increasing list, e.g. [3, 5, 8]"
            )
        steps = [h / self.comparison_interval_s for h in horizons]
        if any(s < 1 or abs(s - round(s)) > 1e-6 for s in steps):
            raise ValueError(
                "every comparison horizon must be a positive multiple of comparison_interval_s"
            )
        if len(self.miss_displacement_thresholds_m) != len(horizons):
            raise ValueError(
                "miss_displacement_thresholds_m needs one threshold per comparison horizon "
                f"({len(horizons)}), e.g. [6, 8, 16] for [3, 5, 8]"
            )
        return self


class Params(_Section):
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    data: DataParams = Field(default_factory=DataParams)
    worker: WorkerParams = Field(default_factory=WorkerParams)
    filter: FilterParams = Field(default_factory=FilterParams)
    split: SplitParams = Field(default_factory=SplitParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    cache: CacheParams = Field(default_factory=CacheParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)


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
