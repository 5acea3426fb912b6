"""The cheap pixel work, done on whole batches on the training device (GPU where there is one).

Workers hand over uint8 stains, (B, H, W, 4): four times fewer bytes than
float32. On the device, ``BatchTransform`` applies a random dihedral
flip/rotation per image (training only), converts them to float, mixes the
stains into the channel setup's channels and normalises each channel with the
statistics of that mixed channel, without a host sync. The same code runs on CPU.

Normalisation: each input channel is normalised with the mean and std of that
mixed channel over the training pixels (``StainStats.mixed``). Mixing and
normalising are one affine map, applied as one einsum.
"""

from __future__ import annotations

import numpy as np
import torch

from solution.data.stats import StainStats


def random_dihedral(
    x: torch.Tensor, generator: torch.Generator | None = None, dims: tuple[int, int] = (-2, -1)
) -> torch.Tensor:
    """Each item of a batch under one of the 8 flips/rotations of its square ``dims``, drawn per item on the
    batch's device: view k is ``torch.rot90(item, k % 4, dims)``, then flipped along ``dims[1]`` where k >= 4.

    No host sync: each view is a transpose, then a flip of ``dims[0]``, then a flip of ``dims[1]``, each taken
    or not per item by ``torch.where`` (no index of the items drawn for a view, whose length the host would wait
    for). ``generator`` must live on the batch's device.
    """
    k = torch.randint(0, 8, (x.shape[0],), generator=generator, device=x.device)
    rotation, per_item = k % 4, (-1,) + (1,) * (x.dim() - 1)
    first, second = dims
    x = torch.where((k % 2 == 1).view(per_item), x.transpose(first, second), x)
    x = torch.where(((rotation == 1) | (rotation == 2)).view(per_item), x.flip(first), x)
    return torch.where(((rotation >= 2) ^ (k >= 4)).view(per_item), x.flip(second), x)


class BatchTransform:
    """uint8 (B, H, W, 4) stains -> normalised float (B, C, H, W) model input, on the stains' device.

    The affine map's constants move to the stains' device at the first batch there and stay: no copy per batch.
    """

    def __init__(self, matrix: np.ndarray, stats: StainStats, channels_last: bool = False):
        self.stats = stats
        mean, std = stats.mixed(matrix)
        self.weight = torch.as_tensor(matrix / std[:, None], dtype=torch.float32)  # (C, 4)
        self.bias = torch.as_tensor(-mean / std, dtype=torch.float32)  # (C,)
        self.channels_last = channels_last

    def __call__(self, stains: torch.Tensor, dihedral: bool = False) -> torch.Tensor:
        if self.weight.device != stains.device:
            self.weight, self.bias = self.weight.to(stains.device), self.bias.to(stains.device)
        if dihedral:  # on the uint8 stains: a quarter of the bytes of the float input, the same values
            stains = random_dihedral(stains, dims=(1, 2))
        x = torch.einsum("cs,bhws->bchw", self.weight, stains.float()) + self.bias[None, :, None, None]
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
