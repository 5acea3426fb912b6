"""Rare-class oversampling: the weights by hand, and the seeded sampler's draws against them."""

import numpy as np
import pytest

from solution.core.errors import ConfigError
from solution.data.sampler import oversample_weights, oversampling_sampler


def one_hot(counts: list[int], n_classes: int = 4) -> np.ndarray:
    """Images carrying one label each: ``counts[c]`` images of class c, in class order."""
    return np.repeat(np.eye(n_classes, dtype=np.uint8)[: len(counts)], counts, axis=0)


# 100 images: 80 of class 0 only, 12 of class 1 only, 4 of class 2 only, 2 of classes 0 and 2, 2 unlabelled.
# Class frequencies: 0.82, 0.12, 0.06, and class 3 absent.
LABELS = np.concatenate([one_hot([80, 12, 4]), np.array([[1, 0, 1, 0]] * 2, np.uint8), np.zeros((2, 4), np.uint8)])
ONLY_0, ONLY_1, ONLY_2, BOTH_0_2, UNLABELLED = (
    np.arange(0, 80),
    np.arange(80, 92),
    np.arange(92, 96),
    [96, 97],
    [98, 99],
)
CLASS_2 = np.arange(92, 98)


def draws(labels: np.ndarray, factor: float, epochs: int, seed: int = 0) -> np.ndarray:
    """How often each image was drawn in ``epochs`` epochs of the seeded sampler."""
    sampler = oversampling_sampler(labels, factor, seed)
    drawn = np.concatenate([list(sampler) for _ in range(epochs)])
    return np.bincount(drawn, minlength=len(labels))


def test_factor_zero_weighs_every_image_the_same():
    assert np.array_equal(oversample_weights(LABELS, 0.0), np.ones(100))


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_an_image_weighs_its_rarest_class_boost(factor):
    w = oversample_weights(LABELS, factor)
    assert np.allclose(w[ONLY_0], 1.0) and np.allclose(w[UNLABELLED], 1.0)
    assert np.allclose(w[ONLY_1], (0.82 / 0.12) ** factor)
    assert np.allclose(w[ONLY_2], (0.82 / 0.06) ** factor) and np.allclose(w[BOTH_0_2], (0.82 / 0.06) ** factor)


def test_draws_of_a_rare_class_rise_as_documented():
    factor, epochs = 0.5, 200  # 20,000 draws
    w = oversample_weights(LABELS, factor)
    expected = 100 * epochs * w / w.sum()
    counts = draws(LABELS, factor, epochs)
    # Per image, a class-2 image is drawn (f_max / f_2) ** factor times as often as a class-0-only image.
    ratio = (0.82 / 0.06) ** factor
    assert expected[CLASS_2].mean() / expected[ONLY_0].mean() == pytest.approx(ratio)
    assert counts[CLASS_2].mean() / counts[ONLY_0].mean() == pytest.approx(ratio, rel=0.08)
    # Class 2's share of the draws: 6 % without oversampling, 6 x ratio / sum(w) with it.
    share = counts[CLASS_2].sum() / counts.sum()
    assert expected[CLASS_2].sum() / (100 * epochs) == pytest.approx(6 * ratio / w.sum())
    assert share == pytest.approx(6 * ratio / w.sum(), abs=0.015) and share > 2 * 0.06
    assert draws(LABELS, 0.0, epochs)[CLASS_2].sum() / counts.sum() == pytest.approx(0.06, abs=0.01)


def test_factor_one_draws_every_single_label_class_as_often():
    labels = one_hot([70, 20, 8, 2])
    counts = draws(labels, 1.0, 200)
    per_class = np.array([counts[labels[:, c] == 1].sum() for c in range(4)]) / counts.sum()
    assert per_class == pytest.approx([0.25] * 4, abs=0.015)


def test_the_sampler_is_deterministic_for_a_seed():
    assert np.array_equal(draws(LABELS, 1.0, 3, seed=7), draws(LABELS, 1.0, 3, seed=7))
    assert not np.array_equal(draws(LABELS, 1.0, 3, seed=7), draws(LABELS, 1.0, 3, seed=8))
    sampler = oversampling_sampler(LABELS, 1.0, seed=7)
    first, second = list(sampler), list(sampler)
    assert len(first) == 100 and first != second  # each epoch draws anew


@pytest.mark.parametrize("factor", [-0.5, float("inf"), float("nan"), "1"])
def test_a_bad_factor_names_the_key(factor):
    with pytest.raises(ConfigError, match="oversample: the factor must be a non-negative finite number"):
        oversample_weights(LABELS, factor)
