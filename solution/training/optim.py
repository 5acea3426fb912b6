"""Optimizers by name, built by timm's ``create_optimizer_v2`` (no weight decay on norm layers and biases)."""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from solution.core.registry import Registry

# name -> keyword arguments of timm's create_optimizer_v2 (timm's 'sgd' is Nesterov SGD).
OPTIMIZERS: Registry[dict[str, Any]] = Registry(
    "optimizer",
    {
        "adamw": {"opt": "adamw"},
        "sgd": {"opt": "sgd", "momentum": 0.9},
    },
)


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return create_optimizer_v2(model, lr=lr, weight_decay=weight_decay, **OPTIMIZERS[name])
