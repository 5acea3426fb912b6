"""Rare-class oversampling: per-image weights for torch's ``WeightedRandomSampler``.

Rule: with f_c the fraction of the training images that carry class c and f_max
the largest of them, an image's weight is the largest, over its classes, of
(f_max / f_c) ** factor; an image without any label weighs 1. An epoch draws as
many images as there are, with replacement, each with probability proportional
to its weight (image i is drawn N * w_i / sum(w) times per epoch, on average).
So an image whose rarest class is c is drawn (f_max / f_c) ** factor times as
often as an image that carries only the most frequent class: with factor 0.5, an
image of a class 100 times rarer than the most frequent one weighs 10; with
factor 1 and one label per image, every class gets as many draws as the most
frequent one. ``factor = 0`` gives every image weight 1 (no oversampling).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from solution.core.errors import ConfigError


def oversample_weights(labels: np.ndarray, factor: float) -> np.ndarray:
    """(N,) float64 sampling weights of the images whose (N, C) 0/1 ``labels`` are given; see the module's rule."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
        raise ConfigError(f"oversample: the factor must be a non-negative finite number, got {factor!r}")
    carries = np.asarray(labels).astype(bool)
    if carries.ndim != 2:
        raise ValueError(f"expected (N, C) labels, got shape {carries.shape}")
    freq = carries.mean(axis=0)
    present = freq > 0
    boost = np.ones_like(freq)
    boost[present] = (freq.max() / freq[present]) ** factor
    # Every boost is at least 1, so starting the maximum at 1 only matters for images without a label.
    return (carries * boost).max(axis=1, initial=1.0)


def oversampling_sampler(
    labels: np.ndarray, factor: float, seed: int, num_samples: int | None = None
) -> WeightedRandomSampler:
    """A sampler of ``num_samples`` (default len(labels)) draws per epoch, with replacement, by ``oversample_weights``.

    ``labels`` are the rows of the images the training dataset serves, in its
    order (its item i has ``labels[i]``). The draws come from a torch generator
    seeded with ``seed``: the same seed gives the same sequence of epochs.
    """
    weights = torch.from_numpy(oversample_weights(labels, factor))
    generator = torch.Generator().manual_seed(seed)
    draws = len(weights) if num_samples is None else num_samples
    return WeightedRandomSampler(weights, num_samples=draws, replacement=True, generator=generator)  # type: ignore[arg-type]
