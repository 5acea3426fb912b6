"""Batches of cached images for training and prediction (torch DataLoaders of uint8 stains)."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from solution.data.dataset import HpaDataset, Images, init_worker


def make_loader(
    images: Images,
    positions: np.ndarray,
    batch_size: int,
    num_workers: int,
    labels: np.ndarray | None = None,
    transform: A.Compose | None = None,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Batches of ``images[positions]`` as uint8 (B, H, W, 4), pinned for the GPU where there is one.

    A training loader (``shuffle``) drops its last incomplete batch and, with
    ``world_size`` > 1 (torchrun), gives each rank its share of every epoch;
    ``sampler`` (e.g. rare-class oversampling) replaces the shuffle.
    """
    dataset = HpaDataset(images, positions, labels, transform)
    drop_last = shuffle and len(dataset) > batch_size * world_size
    if shuffle and sampler is None and world_size > 1:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=seed, drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=init_worker,
    )
