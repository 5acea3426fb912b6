"""Classifier heads: a backbone's last feature map (B, F, h, w) -> (B, num_classes) logits, one per ``head`` name.

``avg`` is global average pooling, dropout and a linear layer: for a timm backbone the model keeps timm's own
classifier (``solution.training.models``), so checkpoints of that layout load. ``avgmax`` concatenates global
average and max pooling, then BatchNorm, dropout and a linear layer (bestfitting's 1st-place head: the max
keeps a small, bright pattern that the average dilutes). ``attention`` weighs each location's class logits by
a softmax over the locations of that class's attention logits (pudae's 3rd-place head, one attention map per
class: each class's evidence sits in its own place in the cell), after dropout on the features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from solution.core.registry import Registry


def _avg(features: int, num_classes: int, drop_rate: float) -> nn.Module:
    """Average pooling, dropout, linear (the layout of an smp model's head since the kit began)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate), nn.Linear(features, num_classes))


class AvgMaxHead(nn.Module):
    """Concatenated global average and max pooling (2F), BatchNorm, dropout, linear."""

    def __init__(self, features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(2 * features)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(2 * features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)
        return self.fc(self.dropout(self.norm(pooled)))


class AttentionHead(nn.Module):
    """Per-location class logits (a 1x1 convolution), averaged over locations with per-class softmax weights
    (another 1x1 convolution's logits, softmax over the h x w locations)."""

    def __init__(self, features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.dropout = nn.Dropout(drop_rate)
        self.logits = nn.Conv2d(features, num_classes, 1)
        self.attention = nn.Conv2d(features, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        weights = torch.softmax(self.attention(x).flatten(2), dim=-1)  # (B, K, h * w), each row sums to 1
        return (weights * self.logits(x).flatten(2)).sum(-1)


HeadBuilder = Callable[[int, int, float], nn.Module]  # (features, num_classes, drop_rate) -> head

HEADS: Registry[HeadBuilder] = Registry("head", {"avg": _avg, "avgmax": AvgMaxHead, "attention": AttentionHead})


def build_head(name: str, features: int, num_classes: int, drop_rate: float) -> nn.Module:
    """The head ``name`` over ``features`` channels."""
    return HEADS[name](features, num_classes, drop_rate)
