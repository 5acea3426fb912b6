"""Classifier construction: a timm model, or a segmentation-models-pytorch encoder with a pooled head.

``backbone`` names a timm model (``resnet34``) or, with the ``smp:`` prefix, an
smp encoder (``smp:resnet34``). A name that neither library registers fails
loudly with the close matches, as timm's own registry does. The input channel
count follows from the channel setup.
"""

from __future__ import annotations

import difflib

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from solution.classes import NUM_CLASSES
from solution.config import ExperimentConfig
from solution.data.channels import in_channels
from solution.errors import ConfigError

SMP_PREFIX = "smp:"


class SmpClassifier(nn.Module):
    """An smp encoder's deepest feature map, average-pooled, into a linear multi-label head."""

    def __init__(self, encoder_name: str, in_chans: int, num_classes: int, pretrained: bool, drop_rate: float):
        super().__init__()
        weights = "imagenet" if pretrained else None
        self.encoder = smp.encoders.get_encoder(encoder_name, in_channels=in_chans, depth=5, weights=weights)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(drop_rate),
            nn.Linear(self.encoder.out_channels[-1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1])


def _check_name(backbone: str) -> None:
    if backbone.startswith(SMP_PREFIX):
        library, name, known = "smp encoder", backbone[len(SMP_PREFIX) :], list(smp.encoders.encoders)
    else:
        library, name, known = "timm model", backbone, timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=8, cutoff=0.6)
        raise ConfigError(
            f"unknown {library} {name!r} in backbone {backbone!r}; close matches: {', '.join(close) or 'none'}"
        )


def build_model(cfg: ExperimentConfig) -> nn.Module:
    """The classifier of an experiment, with ``in_channels(cfg.channels)`` inputs and 28 logits."""
    _check_name(cfg.backbone)
    in_chans = in_channels(cfg.channels)
    try:
        if cfg.backbone.startswith(SMP_PREFIX):
            return SmpClassifier(cfg.backbone[len(SMP_PREFIX) :], in_chans, NUM_CLASSES, cfg.pretrained, cfg.drop_rate)
        return timm.create_model(
            cfg.backbone, pretrained=cfg.pretrained, in_chans=in_chans, num_classes=NUM_CLASSES, drop_rate=cfg.drop_rate
        )
    except Exception as exc:  # network and hub errors come in many types
        if not cfg.pretrained:
            raise
        raise ConfigError(
            f"pretrained: could not load pretrained weights for {cfg.backbone!r} ({type(exc).__name__}: {exc}). "
            "Pretrained weights are downloaded on first use: run once with network access to fill the cache "
            "(HF_HOME / TORCH_HOME), or set `pretrained: false` in the config."
        ) from exc
