"""Typed training batches: the cache's flat records with a leading batch axis, as torch tensors.

``PlutoBatch.from_flat({"agent.position": (B, A, T, 2), ...})`` groups the flat keys of a collated
batch (``pluto_dvc.features.collate`` / ``CacheDataset.batch``) into typed sub-batches whose
attribute paths mirror the keys: ``agent.position`` -> ``batch.agent.position``. Sizes: B samples,
A agents (the ego is row 0), T = history + 1 + future steps, F future steps, M map polygons,
P points per polyline, R reference lines, L points per reference line, K future seconds,
S static objects, H = W cost-map pixels. Frame: the ego rear axle at the present step (metres,
m/s, radians). Padding rows (agents, polygons, lines, static objects beyond a sample's own count)
are zeros with False valid masks. Optional parts are ``None`` when the cache has none.

Only torch is imported here (no map/GIS stack): training machines and loader workers decode
shards and build batches without shapely, pyogrio or pyproj.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from pluto_dvc.errors import DataError
from pluto_dvc.features.records import (
    AgentFeatures,
    CausalInfo,
    MapFeatures,
    ReferenceLines,
    StaticObjects,
)

__all__ = [
    "AgentBatch",
    "BatchError",
    "CausalBatch",
    "MapBatch",
    "PlutoBatch",
    "ReferenceLineBatch",
    "StaticObjectBatch",
]


class BatchError(DataError):
    """A batch whose keys, shapes or dtypes do not match the PLUTO feature layout."""


def _check(
    owner: str,
    spec: dict[str, tuple[torch.dtype, tuple[Any, ...]]],
    values: dict[str, Tensor | None],
    sizes: dict[str, int],
) -> None:
    """Check dtype and shape of each present value against ``spec`` (size names must agree)."""
    for name, (dtype, pattern) in spec.items():
        value = values.get(name)
        if value is None:
            continue
        where = f"{owner}.{name}"
        if not isinstance(value, Tensor):
            raise BatchError(f"{where} is a {type(value).__name__}, expected a torch.Tensor")
        if value.dtype != dtype:
            raise BatchError(f"{where} has dtype {value.dtype}, expected {dtype}")
        if value.ndim != len(pattern):
            raise BatchError(f"{where} has shape {tuple(value.shape)}, expected {pattern}")
        for dim, want in zip(value.shape, pattern, strict=True):
            if isinstance(want, str):
                want = sizes.setdefault(want, dim)
            if dim != want:
                raise BatchError(
                    f"{where} has shape {tuple(value.shape)}, expected {pattern} with {sizes}"
                )


def _pad_cat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along axis 0, zero-padding every other axis to the largest size."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].ndim)]
    parts = []
    for t in tensors:
        if list(t.shape[1:]) != shape:
            padded = t.new_zeros((t.shape[0], *shape))
            padded[tuple(slice(0, s) for s in t.shape)] = t
            t = padded
        parts.append(t)
    return torch.cat(parts)


class _SubBatch:
    """Shared flat conversion, device transfer, validation and concatenation of a sub-batch.

    ``SPEC`` maps each field to (dtype, shape pattern); patterns name sizes ("B", "A", ...)
    that must agree across fields (and with the rest of the batch). Fields whose default is
    ``None`` are optional (absent from some caches)."""

    PREFIX: ClassVar[str] = ""
    SPEC: ClassVar[dict[str, tuple[torch.dtype, tuple[Any, ...]]]] = {}

    @classmethod
    def from_flat(cls, flat: dict[str, Tensor]) -> Any:
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            key = cls.PREFIX + f.name
            if key in flat:
                values[f.name] = flat[key]
            elif f.default is not None:  # a required field
                raise BatchError(f"batch has '{cls.PREFIX}*' keys but lacks '{key}'")
        return cls(**values)

    @classmethod
    def present_in(cls, flat: dict[str, Tensor]) -> bool:
        return any(key.startswith(cls.PREFIX) for key in flat)

    def to_flat(self) -> dict[str, Tensor]:
        return {
            self.PREFIX + f.name: getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        }

    def _map(self, fn) -> Any:
        return type(self)(
            **{
                f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                for f in fields(self)  # type: ignore[arg-type]
            }
        )

    def validate(self, sizes: dict[str, int] | None = None) -> dict[str, int]:
        """Check every field's dtype and shape; returns the sizes found (``sizes`` pre-binds)."""
        sizes = {} if sizes is None else sizes
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        _check(type(self).__name__, self.SPEC, values, sizes)
        return sizes

    @classmethod
    def cat(cls, parts: Sequence[Any]) -> Any:
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            present = [getattr(p, f.name) for p in parts]
            if all(v is None for v in present):
                values[f.name] = None
            elif any(v is None for v in present):
                raise BatchError(f"cannot concatenate: {cls.__name__}.{f.name} is missing in some")
            else:
                values[f.name] = _pad_cat(present)
        return cls(**values)


def _batched(spec: dict[str, tuple[str, tuple[Any, ...]]]) -> dict[str, tuple[torch.dtype, tuple]]:
    """A record's per-sample SPEC (features/records.py) with a leading batch axis, torch dtypes."""
    return {name: (getattr(torch, dtype), ("B", *shape)) for name, (dtype, shape) in spec.items()}


@dataclass
class AgentBatch(_SubBatch):
    """Ego (row 0) and the nearest agents over history, present and future.

    position: (B, A, T, 2) float32 rear axle (ego) / box centre (others), m.
    heading: (B, A, T) float32 rad. velocity: (B, A, T, 2) float32 m/s.
    shape: (B, A, T, 2) float32 width, length (m). category: (B, A) int8 0 ego, 1 vehicle,
    2 pedestrian, 3 bicycle. valid_mask: (B, A, T) bool (False on padding rows).
    target: (B, A, F, 3) float32 future x, y, heading minus the present ones; 0 where invalid.
    """

    position: Tensor
    heading: Tensor
    velocity: Tensor
    shape: Tensor
    category: Tensor
    valid_mask: Tensor
    target: Tensor

    PREFIX: ClassVar[str] = AgentFeatures.PREFIX
    SPEC: ClassVar[dict] = _batched(AgentFeatures.SPEC)


@dataclass
class MapBatch(_SubBatch):
    """Map polygons (lanes, lane connectors, crosswalks).

    point_position / point_vector: (B, M, 3, P, 2) float32 centreline, left, right boundary
    points and their differences. point_orientation: (B, M, 3, P) float32 rad.
    point_side: (B, M, 3) int8. polygon_center: (B, M, 3) float32 x, y, orientation.
    polygon_position: (B, M, 2) float32; polygon_orientation: (B, M) float32.
    polygon_type: (B, M) int8 0 lane, 1 connector, 2 crosswalk. polygon_on_route: (B, M) bool.
    polygon_tl_status: (B, M) int8 0 green, 1 yellow, 2 red, 3 unknown.
    polygon_has_speed_limit: (B, M) bool; polygon_speed_limit: (B, M) float32 m/s.
    polygon_road_block_id, polygon_id: (B, M) int64 (polygon_id may be absent).
    valid_mask: (B, M, P) bool centreline points inside the radius (False on padding).
    """

    point_position: Tensor
    point_vector: Tensor
    point_orientation: Tensor
    point_side: Tensor
    polygon_center: Tensor
    polygon_position: Tensor
    polygon_orientation: Tensor
    polygon_type: Tensor
    polygon_on_route: Tensor
    polygon_tl_status: Tensor
    polygon_has_speed_limit: Tensor
    polygon_speed_limit: Tensor
    polygon_road_block_id: Tensor
    valid_mask: Tensor
    polygon_id: Tensor | None = None

    PREFIX: ClassVar[str] = MapFeatures.PREFIX
    SPEC: ClassVar[dict] = _batched(MapFeatures.SPEC)


@dataclass
class ReferenceLineBatch(_SubBatch):
    """Candidate route-following centrelines from the ego's projection, points 1 m apart.

    position / vector: (B, R, L, 2) float32 m. orientation: (B, R, L) float32 rad.
    valid_mask: (B, R, L) bool (a prefix of each line; all False on padding lines and for a
    sample without any line). future_projection: (B, R, K, 2) float32 the ego future at 1 s
    steps projected on each line: arc length, lateral offset (m).
    """

    position: Tensor
    vector: Tensor
    orientation: Tensor
    valid_mask: Tensor
    future_projection: Tensor

    PREFIX: ClassVar[str] = ReferenceLines.PREFIX
    SPEC: ClassVar[dict] = _batched(ReferenceLines.SPEC)

    @property
    def line_valid(self) -> Tensor:
        """(B, R) bool: lines with at least one valid point."""
        return self.valid_mask.any(-1)


@dataclass
class StaticObjectBatch(_SubBatch):
    """Static objects at the present step.

    position: (B, S, 2) float32 box centre. heading: (B, S) float32. shape: (B, S, 2) float32
    width, length. category: (B, S) int8 0 czone_sign, 1 barrier, 2 traffic_cone,
    3 generic_object. valid_mask: (B, S) bool (False on padding).
    """

    position: Tensor
    heading: Tensor
    shape: Tensor
    category: Tensor
    valid_mask: Tensor

    PREFIX: ClassVar[str] = StaticObjects.PREFIX
    SPEC: ClassVar[dict] = _batched(StaticObjects.SPEC)


@dataclass
class CausalBatch(_SubBatch):
    """Causal facts for the contrastive augmentation: PLUTO's keys, defined in
    ``features/records.py`` (``CausalInfo``), with a leading batch axis (every field optional).

    leading_agent_mask: (B, A) bool agents that are leading objects on the ego's path.
    leading_distance: (B, A) float32 m from the agent's box to the ego's box (0 elsewhere).
    is_waiting_for_red_light_without_lead: (B,) bool.
    ego_care_red_light_mask: (B, M) bool map polygons that are red-light leading objects.
    fixed_ego_future_valid_mask: (B, F) bool the ego future before the red-light cut.
    free_path_points: (B, N, 3) float32 x, y, heading; free_path_valid_mask: (B, N) bool
    (False on padding). interaction_label: (B, A) int16 ego step minus agent step of the
    closest approach of colliding futures (> 0: the agent was there first), 0 otherwise.
    Any other ``causal.*`` key (e.g. of an older cache) is kept in ``extra``, without prefix.
    """

    leading_agent_mask: Tensor | None = None
    leading_distance: Tensor | None = None
    is_waiting_for_red_light_without_lead: Tensor | None = None
    ego_care_red_light_mask: Tensor | None = None
    fixed_ego_future_valid_mask: Tensor | None = None
    free_path_points: Tensor | None = None
    free_path_valid_mask: Tensor | None = None
    interaction_label: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    PREFIX: ClassVar[str] = CausalInfo.PREFIX
    SPEC: ClassVar[dict] = _batched(CausalInfo.SPEC)  # the keys the feature builder writes

    @classmethod
    def from_flat(cls, flat: dict[str, Tensor]) -> CausalBatch:
        names = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {"extra": {}}
        for key, value in flat.items():
            if key.startswith(cls.PREFIX):
                name = key[len(cls.PREFIX) :]
                (values if name in names else values["extra"])[name] = value
        return cls(**values)

    def to_flat(self) -> dict[str, Tensor]:
        flat = {
            self.PREFIX + f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        flat.update({self.PREFIX + k: v for k, v in self.extra.items()})
        return flat

    def _map(self, fn) -> CausalBatch:
        return CausalBatch.from_flat({k: fn(v) for k, v in self.to_flat().items()})

    def validate(self, sizes: dict[str, int] | None = None) -> dict[str, int]:
        sizes = {} if sizes is None else sizes
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        values.update(self.extra)
        _check("CausalBatch", self.SPEC, values, sizes)
        for name, value in values.items():
            if value is not None and (
                not isinstance(value, Tensor) or value.shape[:1] != (sizes["B"],)
            ):
                raise BatchError(f"CausalBatch.{name} must be a tensor with leading batch axis")
        return sizes

    @classmethod
    def cat(cls, parts: Sequence[CausalBatch]) -> CausalBatch:
        flats = [p.to_flat() for p in parts]
        keys = set(flats[0])
        if any(set(f) != keys for f in flats):
            raise BatchError("cannot concatenate causal batches with different keys")
        # index fields point into the agent / polygon rows: padding keeps them valid.
        return cls.from_flat({k: _pad_cat([f[k] for f in flats]) for k in keys})


@dataclass
class PlutoBatch:
    """A batch of PLUTO samples (spec sections 1-2), every tensor with leading axis B.

    current_state: (B, 7) float32 x, y, heading (0 in the ego frame), longitudinal speed (m/s),
    acceleration (m/s^2), steering angle (rad), yaw rate (rad/s).
    origin: (B, 2) float64 global UTM position of the ego rear axle. angle: (B,) float64 global
    ego heading (rad). cost_maps: (B, H, W, 1) float16 signed distance to the drivable-area edge
    (m, positive inside), as stored: cast it on the device (``.float()``).
    """

    current_state: Tensor
    origin: Tensor
    angle: Tensor
    agent: AgentBatch
    map: MapBatch
    reference_line: ReferenceLineBatch | None = None
    static_objects: StaticObjectBatch | None = None
    cost_maps: Tensor | None = None
    causal: CausalBatch | None = None

    _TOP: ClassVar[dict] = {
        "current_state": (torch.float32, ("B", 7)),
        "origin": (torch.float64, ("B", 2)),
        "angle": (torch.float64, ("B",)),
        "cost_maps": (torch.float16, ("B", "H", "W", 1)),
    }
    _PARTS: ClassVar[tuple[tuple[str, type[_SubBatch]], ...]] = (
        ("agent", AgentBatch),
        ("map", MapBatch),
        ("reference_line", ReferenceLineBatch),
        ("static_objects", StaticObjectBatch),
        ("causal", CausalBatch),
    )

    @classmethod
    def from_flat(cls, flat: dict[str, Tensor]) -> PlutoBatch:
        """Group a collated flat batch ``{"agent.position": (B, ...), ...}``; numpy arrays are
        converted with ``torch.from_numpy`` (no copy). Unknown keys raise :class:`BatchError`."""
        flat = {k: (v if isinstance(v, Tensor) else torch.from_numpy(v)) for k, v in flat.items()}
        prefixes = tuple(part.PREFIX for _, part in cls._PARTS)
        unknown = sorted(k for k in flat if k not in cls._TOP and not k.startswith(prefixes))
        if unknown:
            raise BatchError(f"unknown batch keys {unknown}: not part of the PLUTO feature layout")
        for key in ("current_state", "origin", "angle"):
            if key not in flat:
                raise BatchError(f"batch lacks '{key}'")
        for name, part in cls._PARTS[:2]:
            if not part.present_in(flat):
                raise BatchError(f"batch has no '{part.PREFIX}*' keys ({name} is required)")
        parts = {
            name: (part.from_flat(flat) if part.present_in(flat) else None)
            for name, part in cls._PARTS
        }
        return cls(
            current_state=flat["current_state"],
            origin=flat["origin"],
            angle=flat["angle"],
            cost_maps=flat.get("cost_maps"),
            **parts,
        )

    def to_flat(self) -> dict[str, Tensor]:
        """The inverse of :meth:`from_flat`."""
        flat = {"current_state": self.current_state, "origin": self.origin, "angle": self.angle}
        if self.cost_maps is not None:
            flat["cost_maps"] = self.cost_maps
        for name, _ in self._PARTS:
            part = getattr(self, name)
            if part is not None:
                flat.update(part.to_flat())
        return flat

    @property
    def batch_size(self) -> int:
        return int(self.current_state.shape[0])

    @property
    def device(self) -> torch.device:
        return self.current_state.device

    def _map(self, fn) -> PlutoBatch:
        parts = {
            name: (None if getattr(self, name) is None else getattr(self, name)._map(fn))
            for name, _ in self._PARTS
        }
        return PlutoBatch(
            current_state=fn(self.current_state),
            origin=fn(self.origin),
            angle=fn(self.angle),
            cost_maps=None if self.cost_maps is None else fn(self.cost_maps),
            **parts,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PlutoBatch:
        """Every tensor moved to ``device`` (dtypes kept: the cost map stays float16)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> PlutoBatch:
        """Page-locked copy (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())

    def select(self, index: Tensor | slice | Sequence[int]) -> PlutoBatch:
        """The samples ``index`` (a slice, indices or a (B,) bool mask) as a new batch."""
        if not isinstance(index, (slice, Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.long)
        return self._map(lambda t: t[index])

    def validate(self) -> dict[str, int]:
        """Check every tensor's dtype and shape, and that sizes agree across parts (the agent
        count A between agents and causal info, F between targets and causal info, ...).
        Returns the sizes found, e.g. ``{"B": 32, "A": 48, "T": 101, ...}``."""
        sizes: dict[str, int] = {}
        values = {name: getattr(self, name) for name in self._TOP}
        _check("PlutoBatch", self._TOP, values, sizes)
        for name, _ in self._PARTS:  # size names are unique across parts, shared ones agree
            part = getattr(self, name)
            if part is not None:
                part.validate(sizes)
        return sizes

    @staticmethod
    def cat(batches: Sequence[PlutoBatch]) -> PlutoBatch:
        """One batch of all samples of ``batches`` (in order), zero-padded along the object axes
        (agents, polygons, lines, static objects) to the largest; masks are False on padding."""
        if not batches:
            raise BatchError("PlutoBatch.cat needs at least one batch")
        out: dict[str, Any] = {}
        for name in ("current_state", "origin", "angle", "cost_maps"):
            present = [getattr(b, name) for b in batches]
            if all(v is None for v in present):
                out[name] = None
            elif any(v is None for v in present):
                raise BatchError(f"cannot concatenate: '{name}' is missing in some batches")
            else:
                out[name] = _pad_cat(present)
        for name, part in PlutoBatch._PARTS:
            present = [getattr(b, name) for b in batches]
            if all(v is None for v in present):
                out[name] = None
            elif any(v is None for v in present):
                raise BatchError(f"cannot concatenate: '{name}' is missing in some batches")
            else:
                out[name] = part.cat(present)
        return PlutoBatch(**out)
