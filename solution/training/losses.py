"""Training losses for multi-label logits, by name: the registry that configs, the CLI and tests read.

Every loss maps logits (B, C) and 0/1 targets (B, C) to a scalar. ``build_loss``
turns a config's ``loss`` value into one such function: a registered name, or a
weighted mix such as ``{"focal": 1.0, "lovasz": 0.5}`` (the sum of weight x loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from solution.core.errors import ConfigError, quote
from solution.core.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over images and classes."""
    return F.binary_cross_entropy_with_logits(logits, target)


def focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss: BCE scaled by (1 - p_t)^gamma, which down-weights the many easy negatives."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()


def lovasz(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class Lovasz hinge (Berman et al., 2018): a convex surrogate of each class's Jaccard loss over the batch.

    For one class (column), the hinge errors m_i = max(0, 1 - logit_i * s_i), with
    s_i = +1 for a positive and -1 for a negative, are sorted in decreasing order
    and weighted by the steps of the Jaccard loss along the sorted prefixes
    M_k = {the k largest errors}: loss = sum_k m_(k) (J(M_k) - J(M_{k-1})), where
    J(M) = |M| / |P u M| and P is the class's positives. This is the Lovasz
    extension of J at m; its gradient is these steps (the sort only picks the order).

    A class without positives in the batch is kept: P is empty, so J(M) = 1 for
    every non-empty M and the loss is the largest hinge error of its negatives
    (finite, with a gradient on that image only). Classes are averaged.
    """
    signs = 2 * target - 1
    errors = (1 - logits * signs).clamp(min=0)
    errors, order = torch.sort(errors, dim=0, descending=True)
    positives = target.gather(0, order)
    n_pos = positives.sum(dim=0)
    # After k images: the positives left outside the mistake set, and |P u M_k| (>= 1, as |M_k| = k >= 1).
    intersection = n_pos - positives.cumsum(dim=0)
    union = n_pos + (1 - positives).cumsum(dim=0)
    jaccard = 1 - intersection / union
    steps = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return (errors * steps).sum(dim=0).mean()


def soft_f1(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - macro-F1 computed on probabilities: per class, soft TP = sum(p y), FP = sum(p (1 - y)), FN = sum((1 - p) y).

    A class without positives in the batch has TP = 0, hence F1 = 0 whatever is
    predicted (a constant with no gradient), as the metric scores it when nothing is predicted.
    """
    p = torch.sigmoid(logits)
    tp = (p * target).sum(dim=0)
    fp = (p * (1 - target)).sum(dim=0)
    fn = ((1 - p) * target).sum(dim=0)
    return 1 - (2 * tp / (2 * tp + fp + fn + eps)).mean()


LOSSES: Registry[LossFn] = Registry("loss", {"bce": bce, "focal": focal, "lovasz": lovasz, "soft_f1": soft_f1})


@dataclass(frozen=True)
class WeightedLoss:
    """The sum of weight x loss over ``terms`` ((weight, loss) pairs)."""

    terms: tuple[tuple[float, LossFn], ...]

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([weight * loss(logits, target) for weight, loss in self.terms]).sum()


def _registered() -> str:
    return f"registered: {', '.join(LOSSES)}"


def _named(name: str, gamma: float) -> LossFn:
    loss = LOSSES[name]
    return partial(focal, gamma=gamma) if loss is focal else loss


def _check_weight(name: str, weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise ConfigError(
            f"loss: the weight of {quote(name)} must be a positive finite number, got {quote(weight)}; {_registered()}"
        )
    return float(weight)


def build_loss(spec: str | Mapping[str, float], gamma: float = 2.0) -> LossFn:
    """The loss a config names: one registered name, or a mapping name -> weight (the weighted sum).

    ``gamma`` is the focal loss's exponent, used wherever ``focal`` appears.
    """
    if not math.isfinite(gamma) or gamma < 0:
        raise ConfigError(f"loss: the focal loss's gamma must be a non-negative finite number, got {gamma!r}")
    if isinstance(spec, str):
        return _named(spec, gamma)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"loss: expected a loss name or a mapping name -> weight, got {quote(spec)}; {_registered()}")
    if not spec:
        raise ConfigError(f"loss: an empty mix names no loss; {_registered()}")
    return WeightedLoss(tuple((_check_weight(name, weight), _named(name, gamma)) for name, weight in spec.items()))


def get_loss(name: str) -> LossFn:
    """A registered loss by name, with its default parameters."""
    return build_loss(name)
