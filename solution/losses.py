"""Training losses for multi-label logits, by name: the registry that configs, the CLI and tests read."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from solution.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over images and classes."""
    return F.binary_cross_entropy_with_logits(logits, target)


def focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss: BCE scaled by (1 - p_t)^gamma, which down-weights the many easy negatives."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()


LOSSES: dict[str, LossFn] = {"bce": bce, "focal": focal}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"loss: unknown loss {name!r}; registered: {', '.join(LOSSES)}") from None
