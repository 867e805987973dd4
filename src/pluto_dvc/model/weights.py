"""Safe model files: ``model.safetensors`` (weights) + ``model_config.json`` (the ModelConfig).

``load_model(dir)`` rebuilds the network from its own config and loads the weights with
safetensors: nothing on disk can run code (no pickle), and no training params are needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pluto_dvc.errors import DataError
from pluto_dvc.io import atomic_write
from pluto_dvc.model.config import load_config, save_config
from pluto_dvc.model.model import PlutoModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"


def unwrap(model: nn.Module) -> PlutoModel:
    """The ``PlutoModel`` inside a ``torch.compile`` / DDP / Lightning wrapper (or itself)."""
    while not isinstance(model, PlutoModel):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"{type(model).__name__} is not (and does not wrap) a PlutoModel")
        model = inner
    return model


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write ``<directory>/model.safetensors`` and ``<directory>/model_config.json`` (each
    replaced atomically); returns the directory."""
    net = unwrap(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(
        directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, {"format": "pluto-dvc"})
    )
    atomic_write(directory / CONFIG_FILE, lambda tmp: save_config(net.config, tmp))
    return directory


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> PlutoModel:
    """The model saved in ``directory`` by :func:`save_model`, in eval mode on ``device``."""
    directory = Path(directory)
    weights, config_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    for path in (weights, config_path):
        if not path.is_file():
            raise DataError(
                f"{path} is missing: a saved model is a folder with {WEIGHTS_FILE} and "
                f"{CONFIG_FILE} (written by save_model / the train stage)"
            )
    model = PlutoModel(load_config(config_path))
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{weights} is not a readable safetensors file: {exc}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise DataError(
            f"{weights} does not match {config_path}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong[:5]} (files from different models?)"
        )
    model.load_state_dict(state)
    return model.to(device).eval()
