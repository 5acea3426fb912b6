"""Batches of cached images for training and prediction (torch DataLoaders)."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from solution.data.dataset import HpaDataset


def make_loader(
    images: np.ndarray,
    positions: np.ndarray,
    matrix: np.ndarray,
    batch_size: int,
    num_workers: int,
    labels: np.ndarray | None = None,
    transform: A.Compose | None = None,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Batches of ``images[positions]`` mixed by the channel ``matrix``.

    A training loader (``shuffle``) drops its last incomplete batch and, with
    ``world_size`` > 1 (torchrun), gives each rank its share of every epoch.
    """
    dataset = HpaDataset(images, positions, labels, matrix, transform)
    drop_last = shuffle and len(dataset) > batch_size * world_size
    sampler = None
    if shuffle and world_size > 1:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=seed, drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
