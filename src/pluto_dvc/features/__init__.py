"""The PLUTO feature builder: ego-centric agents, map polygons, reference lines, static objects,
a signed-distance cost map and causal facts, from one nuPlan log and its map.

    builder = LogFeatureBuilder(params.features, load_log(path), maps_root.load(location))
    sample = builder.build(frame_index)     # flat dict[str, np.ndarray]; FeatureError if invalid
    batch = collate([sample, ...])          # padded along the first axis, masks tell pads

Typed records (``records``) are the in-memory form; flat dicts are the storage boundary.
"""

from pluto_dvc.features.builder import LogFeatureBuilder
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
