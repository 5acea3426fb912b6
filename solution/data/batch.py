"""The cheap pixel work, done on whole batches on the training device (GPU where there is one).

Workers hand over uint8 stains, (B, H, W, 4): four times fewer bytes than
float32. On the device, ``BatchTransform`` takes a ``crop`` x ``crop`` window of each image where the config
sets ``crop`` (a random one per image in training, the centre otherwise), applies a random dihedral
flip/rotation per image (training only), converts them to float, mixes the
stains into the channel setup's channels and normalises each channel with the
statistics of that mixed channel, without a host sync. The same code runs on CPU. Its random draws (window
offsets, then views) come from torch's generator of the device, whose state a run's ``last.pt`` keeps: a
resumed run draws what an uninterrupted one would have.

Normalisation (``normalize``, the registry ``NORMALIZATIONS``): ``dataset`` normalises each input channel with
the mean and std of that mixed channel over the training pixels (``StainStats.mixed``); ``image`` with the
mean and std of that mixed channel over the image itself (from its own stain means and covariance, on the
device, over the whole image before any crop: the windows of one image share its normalisation), so that a
brighter or dimmer image (another microscope, the external images) comes out the same. Either way mixing and
normalising are one affine map, applied as one einsum; a std under 1e-3 (a blank stain) counts as 1e-3, as
in ``StainStats.mixed``.
"""

from __future__ import annotations

import numpy as np
import torch

from solution.core.registry import Registry
from solution.data.stats import MIN_VARIANCE, StainStats

CENTRE = (0.5, 0.5)  # a window's place, as the fraction of the room left on each side that lies above / left of it

# normalize -> whether each image is normalised by its own statistics (else by the training pixels')
NORMALIZATIONS: Registry[bool] = Registry("normalize", {"dataset": False, "image": True})


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


def fixed_crop(
    x: torch.Tensor, size: int, at: tuple[float, float] = CENTRE, dims: tuple[int, int] = (-2, -1)
) -> torch.Tensor:
    """The ``size`` x ``size`` window of ``dims`` at ``at``: its offset along each dim is that fraction of the
    room left (rounded down): (0, 0) the top-left corner, (1, 1) the bottom-right, ``CENTRE`` the centre. A view."""
    for dim, fraction in zip(dims, at):
        x = x.narrow(dim, int((x.shape[dim] - size) * fraction), size)
    return x


def random_crops(stains: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W, S) -> (B, size, size, S): each item's own window, its offsets drawn uniformly on the batch's
    device and gathered by index tensors (no host sync). ``generator`` must live on the batch's device."""
    b, h, w = stains.shape[:3]
    device = stains.device
    top = torch.randint(0, h - size + 1, (b, 1, 1), generator=generator, device=device)
    left = torch.randint(0, w - size + 1, (b, 1, 1), generator=generator, device=device)
    span = torch.arange(size, device=device)
    items = torch.arange(b, device=device).view(b, 1, 1)
    return stains[items, top + span.view(1, size, 1), left + span.view(1, 1, size)]


def image_affine(matrix: torch.Tensor, stains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the weights (B, C, 4) and biases (B, C) that mix its stains into the (C, 4) ``matrix``'s
    channels and normalise each by its mean and std over the image: from the image's stain means and
    covariance, as ``StainStats.mixed`` does for the training pixels."""
    pixels = stains.flatten(1, 2).float()  # (B, H * W, 4)
    mean = pixels.mean(1)
    centred = pixels - mean[:, None]
    cov = centred.transpose(1, 2) @ centred / pixels.shape[1]  # (B, 4, 4)
    var = torch.einsum("cs,bst,ct->bc", matrix, cov, matrix)
    std = var.clamp_min(MIN_VARIANCE).sqrt()
    return matrix / std[..., None], -(mean @ matrix.T) / std


class BatchTransform:
    """uint8 (B, H, W, 4) stains -> normalised float (B, C, H, W) model input, on the stains' device.

    ``normalize`` names an entry of ``NORMALIZATIONS``; ``crop`` (0: off) the window's size. The affine map's
    constants move to the stains' device at the first batch there and stay: no copy per batch.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        stats: StainStats,
        channels_last: bool = False,
        normalize: str = "dataset",
        crop: int = 0,
    ):
        self.stats = stats
        self.per_image = NORMALIZATIONS[normalize]
        self.matrix = torch.as_tensor(matrix, dtype=torch.float32)  # (C, 4)
        mean, std = stats.mixed(matrix)
        self.weight = torch.as_tensor(matrix / std[:, None], dtype=torch.float32)  # (C, 4)
        self.bias = torch.as_tensor(-mean / std, dtype=torch.float32)  # (C,)
        self.channels_last = channels_last
        self.crop = crop

    def __call__(self, stains: torch.Tensor, dihedral: bool = False, random_crop: bool = False) -> torch.Tensor:
        """The model input; ``dihedral``: a random flip/rotation per image; ``random_crop``: a random window per
        image where ``crop`` is set (else the centre one)."""
        if self.weight.device != stains.device:
            self.matrix, self.weight, self.bias = (t.to(stains.device) for t in (self.matrix, self.weight, self.bias))
        weight, bias = image_affine(self.matrix, stains) if self.per_image else (self.weight, self.bias)
        if self.crop:  # on the uint8 stains, as the flips: a quarter of the bytes of the float input
            stains = random_crops(stains, self.crop) if random_crop else fixed_crop(stains, self.crop, dims=(1, 2))
        if dihedral:
            stains = random_dihedral(stains, dims=(1, 2))
        if weight.dim() == 3:  # per image
            x = torch.einsum("bcs,bhws->bchw", weight, stains.float()) + bias[:, :, None, None]
        else:
            x = torch.einsum("cs,bhws->bchw", weight, stains.float()) + bias[None, :, None, None]
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
