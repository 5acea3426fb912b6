"""The cheap pixel work, done on whole batches on the training device (GPU where there is one).

Workers hand over uint8 stains, (B, H, W, 4): four times fewer bytes than
float32. On the device, ``BatchTransform`` converts them to float, applies a
random dihedral flip/rotation per image (training only), mixes the stains into
the channel setup's channels and normalises each channel with the statistics
of that mixed channel. The same code runs on CPU.

Normalisation: each input channel is normalised with the mean and std of that
mixed channel over the training pixels (``StainStats.mixed``). Mixing and
normalising are one affine map, applied as one einsum.
"""

from __future__ import annotations

import numpy as np
import torch

from solution.data.stats import StainStats


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
