"""The PLUTO planning network in plain PyTorch (spec section 3), fed by typed batches.

    from pluto_dvc.model import ModelConfig, PlutoModel, PlutoBatch, save_model, load_model
    config = ModelConfig.for_cache("data/cache", preset="small")
    out = PlutoModel(config)(batch)          # PlutoOutput

Light imports only (torch, numpy): no map/GIS stack, no cache builder.
"""

from pluto_dvc.model.batch import (
    AgentBatch,
    BatchError,
    CausalBatch,
    MapBatch,
    PlutoBatch,
    ReferenceLineBatch,
    StaticObjectBatch,
)
from pluto_dvc.model.config import PRESETS, LayoutError, ModelConfig, cache_layout
from pluto_dvc.model.output import TRAJECTORY_CHANNELS, PlutoOutput

__all__ = [
    "PRESETS",
    "TRAJECTORY_CHANNELS",
    "AgentBatch",
    "BatchError",
    "CausalBatch",
    "LayoutError",
    "MapBatch",
    "ModelConfig",
    "PlutoBatch",
    "PlutoOutput",
    "ReferenceLineBatch",
    "StaticObjectBatch",
    "cache_layout",
]
