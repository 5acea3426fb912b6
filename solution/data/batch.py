"""The cheap pixel work, done on whole batches on the training device (GPU where there is one).

Workers hand over uint8 stains, (B, H, W, 4): four times fewer bytes than
float32. On the device, ``BatchTransform`` converts them to float, applies a
random dihedral flip/rotation per image (training only), mixes the stains into
the channel setup's channels and normalises each channel with the statistics
of that mixed channel. The same code runs on CPU.

Normalisation: with stain mean vector m and stain covariance S (0..255 scale,
over every pixel of the training images), an input channel c = w . stains has
mean w . m and variance w S w^T, exactly, whatever the stains' correlation.
Mixing and normalising are one affine map, applied as one einsum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from solution.data.layout import STAINS


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
        return mean, np.sqrt(np.maximum(var, 1e-6))


def random_dihedral(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of a square (B, C, H, W) batch under one of the 8 flips/rotations, drawn per image."""
    k = torch.randint(0, 8, (x.shape[0],), generator=generator).to(x.device)
    out = torch.empty_like(x)
    for t in range(8):
        idx = (k == t).nonzero(as_tuple=True)[0]
        if len(idx):
            view = torch.rot90(x[idx], t % 4, dims=(-2, -1))
            out[idx] = view.flip(-1) if t >= 4 else view
    return out


class BatchTransform:
    """uint8 (B, H, W, 4) stains -> normalised float (B, C, H, W) model input, on the stains' device."""

    def __init__(self, matrix: np.ndarray, stats: StainStats, channels_last: bool = False):
        self.stats = stats
        mean, std = stats.mixed(matrix)
        self.weight = torch.as_tensor(matrix / std[:, None], dtype=torch.float32)  # (C, 4)
        self.bias = torch.as_tensor(-mean / std, dtype=torch.float32)  # (C,)
        self.channels_last = channels_last

    def __call__(self, stains: torch.Tensor, dihedral: bool = False) -> torch.Tensor:
        weight, bias = self.weight.to(stains.device), self.bias.to(stains.device)
        x = torch.einsum("cs,bhws->bchw", weight, stains.float()) + bias[None, :, None, None]
        if dihedral:
            x = random_dihedral(x)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def stats_of_images(images: np.ndarray, chunk: int = 256) -> StainStats:
    """Stain statistics of an (N, H, W, 4) uint8 array, streamed in chunks with float64 accumulation."""
    sums, products, count = np.zeros(4), np.zeros((4, 4)), 0
    for start in range(0, len(images), chunk):
        px = np.asarray(images[start : start + chunk], dtype=np.float64).reshape(-1, 4)
        sums += px.sum(0)
        products += px.T @ px
        count += len(px)
    return StainStats.from_moments(count, sums, products)
