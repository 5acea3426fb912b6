"""Batches of cached images for training and prediction (torch DataLoaders of uint8 stains).

A loader runs at most as many workers as its process's share of the CPUs: the CPUs it may run on
(``os.sched_getaffinity``) divided among the training processes that share them, ``TRAIN_JOBS`` (set by
``python -m solution.train --share J/N``, which ``scripts/train_folds.sh --jobs N`` runs) times
``LOCAL_WORLD_SIZE`` (set by torchrun). A config's ``num_workers`` is an upper bound: ``configs/hpa`` asks
12 of a 16-core machine, which ``--jobs 4`` makes 4 per fold.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from solution.data.dataset import HpaDataset, Images, init_worker

if TYPE_CHECKING:
    import albumentations as A  # the transform's type: only training builds one (solution.data.augment)


class EpochSampler(Sampler[tuple[int, int]]):
    """Another sampler's indices, each paired with the epoch's augmentation seed (``start_epoch``).

    The sampler runs in the main process, so the seed it hands out reaches the dataset in whichever process
    reads the item, persistent workers included (see ``solution.data.dataset``).
    """

    def __init__(self, base: Sampler[int]):
        self.base = base
        self.seed = 0

    def start_epoch(self, epoch: int, seed: int) -> None:
        """The next pass's items carry ``seed``; a ``DistributedSampler`` shuffles for ``epoch``."""
        self.seed = seed
        if isinstance(self.base, DistributedSampler):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.seed) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def cpu_share() -> int:
    """This process's share of the CPUs it may run on (at least 1); see the module's docstring."""
    sharers = int(os.environ.get("TRAIN_JOBS", "1")) * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, len(os.sched_getaffinity(0)) // max(1, sharers))


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
    persistent: bool = False,
) -> DataLoader:
    """Batches of ``images[positions]`` as uint8 (B, H, W, 4), pinned for the GPU where there is one.

    A training loader (``shuffle``) drops its last incomplete batch and, with
    ``world_size`` > 1 (torchrun), gives each rank its share of every epoch;
    ``sampler`` (e.g. rare-class oversampling) replaces the shuffle. It runs ``num_workers`` workers, at
    most ``cpu_share()``. Its sampler is an ``EpochSampler``:
    ``loader.sampler.start_epoch(epoch, seed)`` before each pass. ``persistent``: the workers (if any) live
    as long as the loader, for a loader passed over every epoch.
    """
    dataset = HpaDataset(images, positions, labels, transform, rank)
    drop_last = shuffle and len(dataset) > batch_size * world_size
    if shuffle and sampler is None and world_size > 1:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=seed, drop_last=drop_last)
    elif sampler is None:
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    num_workers = min(num_workers, cpu_share())
    persistent = persistent and num_workers > 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(sampler),
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=init_worker,
        persistent_workers=persistent,
        # A loader draws its workers' base seed (which the kit's augmentation does not use) when its workers
        # start: for persistent workers, once per process. From the global generator, that one draw would put
        # a resumed run's random stream off an uninterrupted run's; a loader without workers draws every pass.
        generator=torch.Generator().manual_seed(seed) if persistent else None,
    )
