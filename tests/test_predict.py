import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from solution.core.errors import ConfigError
from solution.training.config import build_config
from solution.training.inference import predict_probs
from solution.training.models import build_model
from solution.training.numerics import Numerics
from solution.training.tta import tta_views


class TopLeft(nn.Module):
    """Logit = the top-left pixel of channel 0, repeated for 28 classes."""

    def forward(self, x):
        return x[:, 0, 0, 0].unsqueeze(1).repeat(1, 28)


def corners_batch():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 0, 2], x[0, 0, 2, 0], x[0, 0, 2, 2] = 1.0, 2.0, 3.0, 4.0
    return x


@pytest.mark.parametrize(
    "mode, expected_logits",
    [
        ("none", [1.0]),
        ("flip", [1.0, 2.0]),  # horizontal flip brings the top-right corner to the top left
        ("d4", [1.0, 2.0, 3.0, 4.0] * 2),  # 8 views: each corner reaches the top left twice
    ],
)
def test_tta_views_by_hand(mode, expected_logits):
    views = tta_views(corners_batch(), mode)
    assert sorted(views[:, 0, 0, 0].tolist()) == sorted(expected_logits)
    loader = DataLoader(TensorDataset(corners_batch(), torch.zeros(1, 28)), batch_size=1)
    probs = predict_probs(TopLeft(), loader, mode, Numerics("fp32", torch.device("cpu"), channels_last=False))
    expected = torch.sigmoid(torch.tensor(expected_logits)).mean().item()
    np.testing.assert_allclose(probs, np.full((1, 28), expected), rtol=1e-6)


def test_d4_views_are_distinct_and_batched():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    views = tta_views(x, "d4")
    assert views.shape == (16, 1, 4, 4)
    flat = {tuple(v.flatten().tolist()) for v in views[0::2]}  # first image of each view
    assert len(flat) == 8


@pytest.mark.parametrize(
    "backbone, channels, n_in",
    [("test_efficientnet", "rgby", 4), ("test_convnext", "g", 1), ("smp:resnet18", "ry_gy_b", 3)],
)
def test_models_take_their_setup_and_give_28_logits(backbone, channels, n_in):
    model = build_model(build_config({"name": "m", "backbone": backbone, "channels": channels}, "test"))
    assert model(torch.zeros(2, n_in, 32, 32)).shape == (2, 28)


@pytest.mark.parametrize(
    "backbone, match",
    [
        ("resnet34x", "unknown timm model 'resnet34x' in backbone 'resnet34x'; close matches: resnet34"),
        ("smp:resnet19", "unknown smp encoder 'resnet19'"),
    ],
)
def test_unknown_backbone_fails_loudly(backbone, match):
    with pytest.raises(ConfigError, match=match):
        build_model(build_config({"name": "m", "backbone": backbone}, "test"))


def test_pretrained_offline_gives_clear_message(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="could not load pretrained weights for 'resnet18'.*pretrained: false"):
        build_model(build_config({"name": "m", "backbone": "resnet18", "pretrained": True}, "test"))
