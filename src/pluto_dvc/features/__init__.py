"""The PLUTO feature builder: ego-centric agents, map polygons, reference lines, static objects,
a signed-distance cost map and causal facts, from one nuPlan log and its map.

    builder = LogFeatureBuilder(params.features, load_log(path), maps_root.load(location))
    sample = builder.build(frame_index)     # flat dict[str, np.ndarray]; FeatureError if invalid
    batch = collate([sample, ...])          # padded along the first axis, masks tell pads

Typed records (``records``) are the in-memory form; flat dicts are the storage boundary.
"""

import importlib
from typing import Any

from pluto_dvc.features.collate import collate
from pluto_dvc.features.records import (
    AgentFeatures,
    CausalInfo,
    CostMap,
    FeatureError,
    MapFeatures,
    PlutoFeatures,
    ReferenceLines,
    StaticObjects,
)

# The builder is imported lazily (PEP 562): ``records`` and ``collate`` are read by the cache
# decoder and the model, which must not import the map/GIS stack (shapely, pyogrio, pyproj).
_EXPORTS = {"LogFeatureBuilder": "builder"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pluto_dvc.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pluto_dvc.features' has no attribute {name!r}")


__all__ = [
    "AgentFeatures",
    "CausalInfo",
    "CostMap",
    "FeatureError",
    "LogFeatureBuilder",
    "MapFeatures",
    "PlutoFeatures",
    "ReferenceLines",
    "StaticObjects",
    "collate",
]
