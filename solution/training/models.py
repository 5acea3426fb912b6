"""Classifier construction: a timm model, or a segmentation-models-pytorch encoder, with the config's head.

``backbone`` names a timm model (``resnet34``) or, with the ``smp:`` prefix, an
smp encoder (``smp:resnet34``). A name that neither library registers fails
loudly with the close matches, as timm's own registry does. The input channel
count follows from the channel setup; ``head`` names one of ``solution.training.heads``, on the backbone's
last feature map (a convolutional backbone's).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, cast

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from solution.core.classes import NUM_CLASSES
from solution.core.errors import ConfigError
from solution.data.channels import in_channels
from solution.training.config import ExperimentConfig
from solution.training.heads import build_head

SMP_PREFIX = "smp:"


class FeatureClassifier(nn.Module):
    """A feature extractor's last feature map into a multi-label head: an smp encoder (it returns every stage's
    map; the deepest is taken) or a timm model built without its pooling and classifier.

    The attribute names make the state-dict keys (``encoder.*``, ``head.*``): smp checkpoints of the kit's
    first layout load."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        return self.head(features[-1] if isinstance(features, list) else features)


def _smp_encoder(name: str, in_chans: int, pretrained: bool, weights_file: str) -> nn.Module:
    """An smp encoder; a local ``weights_file`` (the 3-channel encoder's state dict) is loaded, then its
    first convolution adapted to ``in_chans`` by smp's own ``set_in_channels``, as smp does for ImageNet."""
    if not weights_file:
        return smp.encoders.get_encoder(name, in_channels=in_chans, depth=5, weights="imagenet" if pretrained else None)
    encoder = smp.encoders.get_encoder(name, in_channels=3, depth=5, weights=None)
    encoder.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    encoder.set_in_channels(in_chans, pretrained=True)
    return encoder


def _timm_model(cfg: ExperimentConfig, in_chans: int, pretrained: bool, weights_file: str) -> nn.Module:
    """A timm model; pretrained weights (downloaded, or ``weights_file``) get a first convolution adapted
    to ``in_chans`` by timm's own ``adapt_input_conv`` (in ``load_pretrained``), never a random stem.

    ``head: avg`` keeps timm's own pooling and classifier (the state-dict layout of the kit's checkpoints);
    another head takes the feature map of the model built without them (``num_classes=0, global_pool=''``)."""
    common: dict[str, Any] = {
        "pretrained": pretrained,
        "pretrained_cfg_overlay": {"file": weights_file} if weights_file else None,
        "in_chans": in_chans,
    }
    if cfg.head == "avg":
        return timm.create_model(cfg.backbone, num_classes=NUM_CLASSES, drop_rate=cfg.drop_rate, **common)
    features = timm.create_model(cfg.backbone, num_classes=0, global_pool="", **common)
    width = cast(int, features.num_features)  # the feature map's channels: every timm model sets it
    return FeatureClassifier(features, build_head(cfg.head, width, NUM_CLASSES, cfg.drop_rate))


def check_backbone(backbone: str) -> None:
    """Refuse a backbone that neither timm nor smp registers, listing close matches."""
    if backbone.startswith(SMP_PREFIX):
        library, name, known = "smp encoder", backbone[len(SMP_PREFIX) :], list(smp.encoders.encoders)
    else:
        library, name, known = "timm model", backbone, timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=8, cutoff=0.6)
        raise ConfigError(
            f"unknown {library} {name!r} in backbone {backbone!r}; close matches: {', '.join(close) or 'none'}"
        )


def build_model(cfg: ExperimentConfig, weights: bool = True) -> nn.Module:
    """The classifier of an experiment, with ``in_channels(cfg.channels)`` inputs and 28 logits.

    ``weights``: with the pretrained weights the config names (downloaded, or ``pretrained_file``). False
    builds the same architecture, randomly initialised, for a saved state to be loaded into (a checkpoint,
    a resumed run): it never downloads and never reads ``pretrained_file``, so a trained run predicts and
    resumes offline and without its weights file.
    """
    check_backbone(cfg.backbone)
    in_chans = in_channels(cfg.channels)
    weights_file = cfg.pretrained_file if weights else ""
    pretrained = weights and (cfg.pretrained or bool(weights_file))
    if weights_file and not Path(weights_file).is_file():
        raise ConfigError(f"pretrained_file: no such file {weights_file!r}")
    try:
        if cfg.backbone.startswith(SMP_PREFIX):
            name = cfg.backbone[len(SMP_PREFIX) :]
            encoder = _smp_encoder(name, in_chans, pretrained, weights_file)
            features = int(encoder.out_channels[-1])  # type: ignore[index]
            return FeatureClassifier(encoder, build_head(cfg.head, features, NUM_CLASSES, cfg.drop_rate))
        return _timm_model(cfg, in_chans, pretrained, weights_file)
    except Exception as exc:  # network, hub and state-dict errors come in many types
        if not pretrained:
            raise
        source = f"from {weights_file}" if weights_file else "(downloaded on first use)"
        raise ConfigError(
            f"pretrained: could not load pretrained weights for {cfg.backbone!r} {source} "
            f"({type(exc).__name__}: {exc}). Offline, run once with network access to fill the cache "
            "(HF_HOME / TORCH_HOME), point `pretrained_file` at a saved state dict, or set `pretrained: false`."
        ) from exc
