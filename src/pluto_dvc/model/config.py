"""The model's configuration: one frozen dataclass, two presets, data-fixed sizes from the cache.

    config = ModelConfig.for_cache("data/cache", preset="small", dropout=0.0)
    model = PlutoModel(config)

``preset(name, **overrides)`` gives ``pluto`` (the paper network, about 4.06 M parameters) or
``small`` (the default pipeline's CPU-sized network). The sizes that the data fixes (history,
future, polyline and reference-line points) are never set by hand for training: ``for_cache``
reads them from the cache's manifest metadata, and :meth:`ModelConfig.check_cache` refuses a cache
whose feature layout differs from a saved model's.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pluto_dvc.errors import DataError, ParamsError

# Category counts of the feature layout (features/records.py).
NUM_AGENT_TYPES = 4  # ego, vehicle, pedestrian, bicycle
NUM_POLYGON_TYPES = 3  # lane, lane connector, crosswalk
NUM_TL_STATES = 4  # green, yellow, red, unknown
NUM_STATIC_TYPES = 4  # czone_sign, barrier, traffic_cone, generic_object

# The fields that the cached features fix (set by ``for_cache``, checked by ``check_cache``).
DATA_FIELDS = ("history_steps", "future_steps", "polyline_points", "reference_line_points")


class LayoutError(DataError):
    """A cache whose feature layout differs from the one the model was built for."""


@dataclass(frozen=True)
class ModelConfig:
    # --- sizes fixed by the data (from the cache metadata; see for_cache) ---
    history_steps: int = 21  # past + present steps of agent history (2 s at 0.1 s, + present)
    future_steps: int = 80  # predicted steps (8 s at 0.1 s)
    polyline_points: int = 20  # points per map polyline
    reference_line_points: int = 120  # points per reference line (1 m apart)
    # --- width and depth ---
    dim: int = 128  # token width of the scene encoder and planning decoder
    num_heads: int = 4  # attention heads of the scene encoder and decoder
    encoder_depth: int = 4  # scene-encoder transformer layers
    decoder_depth: int = 4  # planning-decoder layers
    num_modes: int = 12  # longitudinal modes per reference line (queries R x num_modes)
    mlp_ratio: float = 4.0  # feed-forward width / dim in encoder and decoder layers
    # --- agent history encoder: 1-D neighbourhood-attention pyramid ---
    history_dims: tuple[int, ...] = (32, 64, 128)  # widths of the pyramid levels
    history_depths: tuple[int, ...] = (2, 2, 2)  # neighbourhood-attention layers per level
    history_heads: tuple[int, ...] = (2, 4, 8)  # heads per level
    history_kernels: tuple[int, ...] = (3, 3, 5)  # window (odd) per level
    history_mlp_ratio: float = 3.0  # feed-forward width / level width
    # --- embeddings ---
    fourier_bands: int = 64  # frequency bands of the Fourier positional embedding
    # --- regularisation (active in train mode only) ---
    dropout: float = 0.1  # attention and feed-forward dropout
    drop_path: float = 0.2  # stochastic depth, linspace 0 -> drop_path over the layers
    state_dropout: float = 0.75  # probability of hiding each of ego v, a, steer in training
    # --- output scale and ego conditioning (the paper: 1.0 and False) ---
    output_scale_m: float = 1.0  # trajectory heads predict x, y (m) and vx, vy (m/s) in this unit
    ego_query: bool = False  # add the encoded ego token to every planning query
    # --- optional heads ---
    ref_free_head: bool = False  # one reference-free trajectory from the ego token
    hidden_proj: bool = False  # projection of the ego token for the contrastive loss

    def __post_init__(self) -> None:
        problems = []
        for name in ("history_steps", "future_steps", "polyline_points", "reference_line_points"):
            if getattr(self, name) < 2:
                problems.append(f"{name} must be >= 2")
        if self.dim % self.num_heads:
            problems.append(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        levels = {
            len(self.history_dims),
            len(self.history_depths),
            len(self.history_heads),
            len(self.history_kernels),
        }
        if len(levels) != 1 or 0 in levels:
            problems.append("history_dims/depths/heads/kernels must have the same (>0) length")
        else:
            for d, h, k in zip(
                self.history_dims, self.history_heads, self.history_kernels, strict=True
            ):
                if d % h:
                    problems.append(f"history level width {d} not divisible by heads {h}")
                if k < 1 or k % 2 == 0:
                    problems.append(f"history_kernels: {k} must be odd and positive")
        if not self.output_scale_m > 0:
            problems.append("output_scale_m must be > 0")
        for name in ("dropout", "drop_path", "state_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1)")
        for name in (
            "dim",
            "num_heads",
            "encoder_depth",
            "decoder_depth",
            "num_modes",
            "fourier_bands",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise ParamsError("invalid model config: " + "; ".join(problems))

    # --- construction ---
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """The ``pluto`` or ``small`` preset with ``overrides`` applied (unknown keys refused)."""
        if name not in PRESETS:
            raise ParamsError(f"unknown model preset {name!r}; valid: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ParamsError(f"unknown model config key(s) {unknown}; valid: {sorted(known)}")
        checked = {}
        for key, value in values.items():
            default = known[key].default
            if isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                )
                value = tuple(value) if ok else value
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            if not ok:
                raise ParamsError(
                    f"model config key '{key}' = {value!r}: expected "
                    f"{'a list of ints' if isinstance(default, tuple) else type(default).__name__}"
                )
            checked[key] = value
        return cls(**checked)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: Any) -> ModelConfig:
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def for_cache(cls, cache: Any, preset: str = "small", **overrides: Any) -> ModelConfig:
        """The ``preset`` (+ ``overrides``) with the data-fixed sizes of ``cache``.

        ``cache``: a cache directory, a ``CacheDataset`` (its ``.meta``) or the manifest
        metadata dict. Overriding a data-fixed size with another value is refused."""
        layout = cache_layout(cache)
        for key in DATA_FIELDS:
            if key in overrides and overrides[key] != layout[key]:
                raise ParamsError(
                    f"model.{key}={overrides[key]} contradicts the cache ({layout[key]}): the data "
                    "fixes this size; remove the override or rebuild the cache"
                )
        config = cls.preset(preset, **{**overrides, **{k: layout[k] for k in DATA_FIELDS}})
        config.check_cache(cache)
        return config

    def check_cache(self, cache: Any) -> None:
        """Raise :class:`LayoutError` unless ``cache`` has this model's feature layout."""
        layout = cache_layout(cache)
        diff = {
            k: (getattr(self, k), layout[k]) for k in DATA_FIELDS if getattr(self, k) != layout[k]
        }
        if diff:
            text = ", ".join(f"{k}: model {m}, cache {c}" for k, (m, c) in diff.items())
            raise LayoutError(
                f"the cache {_name(cache)} has another feature layout than the model ({text}); "
                "use a cache built with the model's feature params, or train a model on this cache"
            )
        if not layout["reference_lines"] and not self.ref_free_head:
            raise LayoutError(
                f"the cache {_name(cache)} has no reference lines (features.build_reference_lines"
                " false) and the model has no reference-free head: set model.ref_free_head true "
                "or rebuild the cache with reference lines"
            )


# Presets. ``pluto``: the paper's training network (spec section 3). ``small``: sized for the
# default synthetic pipeline on a 2-core CPU (see README, "model").
PRESETS: dict[str, dict[str, Any]] = {
    "pluto": {},
    "small": {
        "dim": 64,
        "num_heads": 4,
        "encoder_depth": 2,
        "decoder_depth": 2,
        "num_modes": 6,
        "history_dims": (32, 64),
        "history_depths": (1, 1),
        "history_heads": (2, 4),
        "history_kernels": (3, 3),
        "fourier_bands": 16,
        "drop_path": 0.1,
        "ref_free_head": True,
        # trains in a few hundred CPU steps (README "model"): outputs in 10 m units, the ego
        # token in every query, no state dropout (the open-loop score needs the ego speed)
        "output_scale_m": 10.0,
        "ego_query": True,
        "state_dropout": 0.0,
    },
}


def _name(cache: Any) -> str:
    if isinstance(cache, (str, Path)):
        return str(cache)
    return str(getattr(cache, "cache_dir", "(metadata)"))


def _meta(cache: Any) -> dict[str, Any]:
    if isinstance(cache, dict):
        return cache
    if isinstance(cache, (str, Path)):
        from pluto_dvc.cache.manifest import read_manifest

        return read_manifest(cache).meta
    meta = getattr(cache, "meta", None)
    if isinstance(meta, dict):
        return meta
    raise TypeError(
        f"expected a cache directory, a CacheDataset or its metadata, got {type(cache)}"
    )


def cache_layout(cache: Any) -> dict[str, Any]:
    """The data-fixed sizes of a cache from its manifest metadata (``source.features``)."""
    meta = _meta(cache)
    try:
        features = meta["source"]["features"]
        interval = float(features["sample_interval_s"])
        layout = {
            "history_steps": int(round(float(features["history_horizon_s"]) / interval)) + 1,
            "future_steps": int(round(float(features["future_horizon_s"]) / interval)),
            "polyline_points": int(features["map_polyline_points"]),
            "reference_line_points": max(2, int(round(float(features["reference_line_length_m"])))),
            "reference_lines": bool(features.get("build_reference_lines", True)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise LayoutError(
            f"the cache {_name(cache)} records no feature layout in its manifest metadata "
            f"(source.features: {exc!r}); rebuild it with `dvc repro build_cache`"
        ) from None
    if not all(math.isfinite(v) for v in layout.values() if not isinstance(v, bool)):
        raise LayoutError(f"the cache {_name(cache)} records an invalid feature layout {layout}")
    return layout


CONFIG_FORMAT = "pluto-dvc-model-config/1"


def save_config(config: ModelConfig, path: str | Path) -> None:
    """``{"format": ..., "config": {field: value}}`` as JSON."""
    content = {"format": CONFIG_FORMAT, "config": config.to_dict()}
    Path(path).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def load_config(path: str | Path) -> ModelConfig:
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the model config {path}: {exc}") from None
    if not isinstance(content, dict) or content.get("format") != CONFIG_FORMAT:
        raise DataError(
            f"{path} is not a pluto-dvc model config (expected format {CONFIG_FORMAT!r}); "
            "it is written by save_model"
        )
    try:
        return ModelConfig.from_dict(content["config"])
    except (ParamsError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: {exc}") from None
