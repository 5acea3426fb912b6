"""The torch Dataset: cached stains -> per-image augmentation (workers) -> uint8 tensor.

Workers return the four stains as uint8 (H, W, 4); flips, channel mixing, float
conversion and normalisation run on whole batches on the device
(``solution.data.batch``). Only augmentations that warp one image at a time
(affine, distortions, blur, intensity) run here.

The augmentation is seeded per epoch by the item itself: a training loader's sampler hands out
``(index, epoch seed)`` pairs (``solution.data.loader.EpochSampler``), and the first item of a new epoch
seeds the reading process's augmentation with ``augmentation_seed`` (its own per worker and per rank).
Persistent workers keep their copy of the dataset across epochs, so the seed cannot be set on the parent's.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from solution.core.classes import NUM_CLASSES

if TYPE_CHECKING:
    import albumentations as A  # the transform's type: only training builds one (solution.data.augment)

try:
    import threadpoolctl  # scikit-learn's dependency: sets the BLAS libraries' threads
except ImportError:  # then numpy's BLAS keeps its own thread count in the workers
    threadpoolctl = None


def augmentation_seed(epoch_seed: int, rank: int, worker: int | None) -> int:
    """The seed of one reader's augmentation for an epoch: the epoch's own in rank 0's main process, one of its
    own for each DataLoader ``worker`` (its id; None: the main process) and each rank (epoch seeds < 2**31)."""
    own = epoch_seed if worker is None else epoch_seed * 1009 + worker + 1
    return own + rank * 2**42


class HpaDataset(Dataset):
    """Items ``images[positions[i]]`` as (stains (H, W, 4) uint8, target (NUM_CLASSES,) float).

    ``images`` is the whole split's (memory-mapped) cache and ``labels`` its label
    rows; ``positions`` selects a fold without copying pixels. The target is
    all zeros where ``labels`` is None (test images). An item is ``i`` or ``(i, epoch seed)``; ``rank`` is the
    process's under DDP, so that each rank augments with its own seeds.
    """

    def __init__(
        self,
        images: Images,
        positions: np.ndarray,
        labels: np.ndarray | None,
        transform: A.Compose | None = None,
        rank: int = 0,
    ):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} label rows")
        self.images = images
        self.positions = np.asarray(positions)
        self.labels = labels
        self.transform = transform
        self.rank = rank
        self.epoch_seed: int | None = None  # what this process's augmentation was last seeded for

    def __len__(self) -> int:
        return len(self.positions)

    def _reseed(self, epoch_seed: int) -> None:
        """Seed the augmentation (albumentations keeps its own generator) for an epoch, so a resumed epoch
        repeats exactly."""
        self.epoch_seed = epoch_seed
        if self.transform is not None:
            info = get_worker_info()
            self.transform.set_random_seed(augmentation_seed(epoch_seed, self.rank, info.id if info else None))

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch_seed = item if isinstance(item, tuple) else (item, None)
        if epoch_seed is not None and epoch_seed != self.epoch_seed:
            self._reseed(epoch_seed)
        pos = self.positions[i]
        image = np.array(self.images[pos])  # a private, writable copy of the memory-mapped pixels
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image))
        y = torch.zeros(NUM_CLASSES) if self.labels is None else torch.from_numpy(self.labels[pos].astype(np.float32))
        return x, y


class StackedImages:
    """Several (N_i, H, W, 4) image arrays seen as one, indexed by position (the competition's first, then extras)."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, pos: int) -> np.ndarray:
        part = int(np.searchsorted(self.starts, pos, side="right")) - 1
        return self.parts[part][pos - self.starts[part]]


Images = np.ndarray | StackedImages  # a split's cache, or several stacked: what a loader reads


def limit_threads() -> None:
    """One thread for torch, OpenCV and the BLAS libraries in this process: loader workers are the parallelism,
    and each with a pool per core they oversubscribe the cores (the ``strong`` preset's grid warp runs 39 ms
    per image with OpenBLAS's threads against 4.5 ms on one)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if threadpoolctl is not None:
        threadpoolctl.threadpool_limits(1)


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per library (``limit_threads``). Safe in a forked worker
    too: its parent forked it with one OpenCV thread (``_one_opencv_thread_across_forks``)."""
    limit_threads()


def _one_opencv_thread_across_forks() -> None:
    """Register fork hooks: OpenCV's thread pool does not survive a fork (in the child, setting its thread count
    waits forever on the parent's threads once they sleep), so a process drops to one OpenCV thread while it
    forks (the child, e.g. a loader worker, keeps that one) and takes its own count back after."""
    counts: list[int] = []

    def before() -> None:
        counts.append(cv2.getNumThreads())
        cv2.setNumThreads(1)

    def after_in_parent() -> None:
        cv2.setNumThreads(counts.pop())

    os.register_at_fork(before=before, after_in_parent=after_in_parent)


_one_opencv_thread_across_forks()
