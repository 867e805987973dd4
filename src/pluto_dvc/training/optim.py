"""AdamW with weight-decay groups and the warm-up + cosine learning-rate schedule (spec section 4).

Decay applies to the weights of Linear, Conv and attention projections only; biases, norms,
embeddings (and any other parameter) are not decayed. The schedule is evaluated at the fractional
epoch ``step / steps_per_epoch``: linear from 0 to ``lr`` over ``warmup_epochs``, then cosine to
``min_lr`` at ``epochs`` (the paper's per-epoch schedule, without its steps at epoch boundaries).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and everything else (each parameter exactly once)."""
    decay: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, _DECAYED):
            continue
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("weight") and param.requires_grad:  # in_proj_weight, weight
                decay[f"{module_name}.{name}" if module_name else name] = param
    rest = [p for n, p in model.named_parameters() if p.requires_grad and n not in decay]
    return [
        {"params": list(decay.values()), "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def lr_factor(epoch: float, epochs: int, warmup_epochs: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at the fractional ``epoch``."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return (epoch + 1e-3) / warmup_epochs  # never exactly 0: the first step still moves
    span = max(epochs - warmup_epochs, 1e-9)
    progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
    floor = min_lr / lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    min_lr: float,
    epochs: int,
    warmup_epochs: int,
    steps_per_epoch: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW + a per-step LambdaLR following :func:`lr_factor`."""
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr)
    steps = max(steps_per_epoch, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step / steps, epochs, warmup_epochs, lr, min_lr)
    )
    return optimizer, schedule
