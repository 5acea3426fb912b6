"""The losses against torch, hand-worked values and a brute-force Lovasz extension; building mixes from specs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from solution.core.errors import ConfigError
from solution.scoring.metrics import f1_per_class
from solution.training.losses import LOSSES, bce, build_loss, focal, get_loss, lovasz, soft_f1

REGISTERED = "registered: bce, focal, lovasz, soft_f1"


def random_batch(seed: int = 0, b: int = 12, c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(b, c, generator=g) < 0.3).float()
    target[:, -1] = 0  # one class without positives in the batch
    return torch.randn(b, c, generator=g) * 2, target


def jaccard_loss(mistakes: set[int], positives: set[int]) -> float:
    """|M| / |P u M|, and 0 for the empty set."""
    return len(mistakes) / len(positives | mistakes) if mistakes else 0.0


def brute_force_lovasz(logits: np.ndarray, labels: np.ndarray) -> float:
    """Lovasz extension of the Jaccard loss of one class as a Choquet integral over the hinge errors' levels.

    With m >= 0: sum over the distinct levels v_1 > v_2 > ... > v_n > v_{n+1} = 0 of
    (v_j - v_{j+1}) J({i : m_i >= v_j}), with the sets built explicitly.
    """
    m = np.maximum(0.0, 1 - logits * (2 * labels - 1))
    positives = {i for i in range(len(labels)) if labels[i]}
    levels = sorted({v for v in m if v > 0}, reverse=True) + [0.0]
    return sum(
        (levels[j] - levels[j + 1]) * jaccard_loss({i for i in range(len(m)) if m[i] >= levels[j]}, positives)
        for j in range(len(levels) - 1)
    )


def test_bce_is_torchs():
    logits, target = random_batch()
    assert bce(logits, target).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item())


def test_focal_with_gamma_zero_is_bce_and_gamma_down_weights_easy_examples():
    logits, target = random_batch()
    assert focal(logits, target, gamma=0.0).item() == pytest.approx(bce(logits, target).item(), rel=1e-6)
    assert build_loss("focal", gamma=0.0)(logits, target).item() == pytest.approx(bce(logits, target).item(), rel=1e-6)
    assert focal(logits, target, gamma=2.0) < focal(logits, target, gamma=1.0) < bce(logits, target)
    assert get_loss("focal")(logits, target).item() == pytest.approx(focal(logits, target).item())


def test_lovasz_by_hand():
    # Errors 1 - logit * sign = [-1, 1.5, 2, -2]: sorted, image 2 (a positive), then image 1 (a negative).
    # J of the prefixes {2}, {2, 1}, ...: 1/2, 2/3, 1, 1, so steps 1/2, 1/6; loss = 2 / 2 + 1.5 / 6 = 1.25.
    logits = torch.tensor([[2.0], [0.5], [-1.0], [-3.0]], requires_grad=True)
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    loss = lovasz(logits, target)
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    assert logits.grad.flatten().tolist() == pytest.approx([0.0, 1 / 6, -1 / 2, 0.0])


def test_lovasz_is_zero_for_a_margin_of_one_and_the_largest_error_without_positives():
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    separated = torch.tensor([[1.0, -1.0], [-1.5, -2.0], [3.0, -1.0]])
    assert lovasz(separated, target).item() == 0.0
    logits = torch.tensor([[1.0, -0.5], [-1.5, 0.25], [3.0, -2.0]])
    assert lovasz(logits, target).item() == pytest.approx((0.0 + 1.25) / 2)  # class 1: max(0, 1 + 0.25)


@pytest.mark.parametrize("seed", range(5))
def test_lovasz_matches_a_brute_force_lovasz_extension(seed):
    logits, target = random_batch(seed)
    expected = np.mean([brute_force_lovasz(logits[:, c].numpy(), target[:, c].numpy()) for c in range(5)])
    assert lovasz(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_soft_f1_is_one_minus_macro_f1_on_hard_predictions():
    logits, target = random_batch()
    hard = torch.where(logits > 0, 50.0, -50.0)
    expected = 1 - f1_per_class(target.numpy(), (hard > 0).numpy()).mean()
    assert soft_f1(hard, target).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", list(LOSSES))
def test_finite_gradients_and_a_step_toward_the_truth_lowers_the_loss(name):
    logits, target = random_batch()
    logits.requires_grad_(True)
    loss_fn = get_loss(name)
    loss = loss_fn(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    toward_truth = logits.detach() + 0.5 * (2 * target - 1)
    assert loss_fn(toward_truth, target) < loss


def test_a_mix_is_the_weighted_sum():
    logits, target = random_batch()
    mix = build_loss({"focal": 1.0, "lovasz": 0.5, "soft_f1": 2}, gamma=1.0)
    expected = focal(logits, target, gamma=1.0) + 0.5 * lovasz(logits, target) + 2 * soft_f1(logits, target)
    assert mix(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "spec, gamma, match",
    [
        ("nope", 2.0, f"loss: unknown 'nope'; {REGISTERED}"),
        ({"focal": 1.0, "nope": 1.0}, 2.0, f"loss: unknown 'nope'; {REGISTERED}"),
        ({}, 2.0, f"loss: an empty mix names no loss; {REGISTERED}"),
        ({"bce": 0.0}, 2.0, f"loss: the weight of 'bce' must be a positive finite number, got 0.0; {REGISTERED}"),
        ({"bce": -1}, 2.0, "the weight of 'bce' must be a positive finite number, got -1"),
        ({"bce": float("inf")}, 2.0, "the weight of 'bce' must be a positive finite number, got inf"),
        ({"bce": "1"}, 2.0, "the weight of 'bce' must be a positive finite number, got '1'"),
        (["bce"], 2.0, f"loss: expected a loss name or a mapping name -> weight, got \\['bce'\\]; {REGISTERED}"),
        ("focal", -1.0, "loss: the focal loss's gamma must be a non-negative finite number, got -1.0"),
    ],
)
def test_bad_specs_name_the_key_and_the_registered_losses(spec, gamma, match):
    with pytest.raises(ConfigError, match=match):
        build_loss(spec, gamma=gamma)
