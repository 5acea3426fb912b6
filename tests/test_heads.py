"""The classifier heads on a timm and an smp backbone: shapes, a training step, the ``avg`` layout, by hand."""

import pytest
import timm
import torch

from solution.training.config import build_config
from solution.training.heads import HEADS, AttentionHead
from solution.training.models import build_model

BACKBONES = ["test_resnet", "smp:resnet18"]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_gives_28_logits_and_trains_a_step(backbone, head):
    cfg = build_config({"name": "h", "backbone": backbone, "head": head, "drop_rate": 0.2}, "test")
    model = build_model(cfg)
    x, y = torch.randn(3, 4, 32, 32), (torch.rand(3, 28) < 0.3).float()
    logits = model(x)
    assert logits.shape == (3, 28)
    before = [p.detach().clone() for p in model.head.parameters()] if hasattr(model, "head") else []
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not before or any(not torch.equal(a, b) for a, b in zip(before, model.head.parameters()))
    model.eval()
    assert model(x[:1]).shape == (1, 28)  # a single image predicts (BatchNorm in eval)


def test_avg_keeps_the_state_dict_layout_of_earlier_checkpoints():
    timm_model = build_model(build_config({"name": "h", "backbone": "test_efficientnet"}, "test"))
    assert timm_model.state_dict().keys() == timm.create_model("test_efficientnet", num_classes=28).state_dict().keys()
    smp_keys = list(build_model(build_config({"name": "h", "backbone": "smp:resnet18"}, "test")).state_dict())
    assert [k for k in smp_keys if not k.startswith("encoder.")] == ["head.3.weight", "head.3.bias"]


def test_attention_takes_the_logits_where_its_map_points():
    """Channel 0 marks one location, channel 1 holds the values: attention on channel 0 reads channel 1 there."""
    head = AttentionHead(features=2, num_classes=1, drop_rate=0.0)
    with torch.no_grad():
        head.attention.weight.copy_(torch.tensor([100.0, 0.0]).view(1, 2, 1, 1))
        head.logits.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
        head.attention.bias.zero_()
        head.logits.bias.zero_()
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 2, 1], x[0, 1] = 1.0, torch.arange(9.0).view(3, 3)
    torch.testing.assert_close(head(x), torch.tensor([[7.0]]))
    x[0, 0] = 0.0  # no mark: a uniform map, the mean of the logits
    torch.testing.assert_close(head(x), torch.tensor([[4.0]]))
