"""Pixel statistics of the stains, from which every channel setup's normalisation follows.

With stain mean vector m and stain covariance S (0..255 scale, over every pixel
of the training images), an input channel c = w . stains has mean w . m and
variance w S w^T, whatever the stains' correlation. The cache computes m and S
in the pass that fills it (``solution.data.cache``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solution.data.layout import STAINS

MIN_VARIANCE = 1e-6  # of a channel, on the 0..255 scale: a blank one's std counts as 1e-3, never 0


@dataclass(frozen=True)
class StainStats:
    """Per-stain mean (4,) and stain covariance (4, 4) of the training pixels, on the 0..255 scale."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def from_moments(cls, count: float, sums: np.ndarray, products: np.ndarray) -> StainStats:
        """From the pixel count, the per-stain sums (4,) and the sums of stain products (4, 4)."""
        mean = sums / count
        return cls(mean=mean, cov=products / count - np.outer(mean, mean))

    def to_dict(self) -> dict[str, list]:
        return {"stains": list(STAINS), "mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> StainStats:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), cov=np.asarray(d["cov"], dtype=np.float64))

    def mixed(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of each channel of a (C, 4) channel setup."""
        mean = matrix @ self.mean
        var = np.einsum("cs,st,ct->c", matrix, self.cov, matrix)
        return mean, np.sqrt(np.maximum(var, MIN_VARIANCE))
