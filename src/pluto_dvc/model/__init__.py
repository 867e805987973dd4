"""The PLUTO planning network in plain PyTorch (spec section 3), fed by typed batches.

    from pluto_dvc.model import ModelConfig, PlutoModel, PlutoBatch, save_model, load_model
    config = ModelConfig.for_cache("data/cache", preset="small")
    out = PlutoModel(config)(batch)          # PlutoOutput

Light imports only (torch, numpy): no map/GIS stack, no cache builder.
"""

import importlib
from typing import Any

# Exported lazily (PEP 562): ``pluto_dvc.params`` reads ``model.config`` without importing torch.
_EXPORTS = {
    "AgentBatch": "batch",
    "BatchError": "batch",
    "CausalBatch": "batch",
    "MapBatch": "batch",
    "PlutoBatch": "batch",
    "ReferenceLineBatch": "batch",
    "StaticObjectBatch": "batch",
    "PRESETS": "config",
    "LayoutError": "config",
    "ModelConfig": "config",
    "cache_layout": "config",
    "PlutoModel": "model",
    "TRAJECTORY_CHANNELS": "output",
    "PlutoOutput": "output",
    "load_model": "weights",
    "save_model": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pluto_dvc.model.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pluto_dvc.model' has no attribute {name!r}")
