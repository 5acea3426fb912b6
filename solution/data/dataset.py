"""The torch Dataset: cached stains -> augmentation -> channel setup -> tensor."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from solution.classes import NUM_CLASSES
from solution.data.channels import to_model_input


class HpaDataset(Dataset):
    """Items ``images[positions[i]]`` as (input (C, H, W), target (NUM_CLASSES,) float).

    ``images`` is the whole split's (memory-mapped) cache and ``labels`` its label
    rows; ``positions`` selects a fold without copying pixels. The target is
    all zeros where ``labels`` is None (test images).
    """

    def __init__(
        self,
        images: np.ndarray,
        positions: np.ndarray,
        labels: np.ndarray | None,
        matrix: np.ndarray,
        transform: A.Compose | None = None,
    ):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} label rows")
        self.images = images
        self.positions = np.asarray(positions)
        self.labels = labels
        self.matrix = matrix
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.positions[i]
        image = np.asarray(self.images[pos])
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        x = torch.from_numpy(to_model_input(image, self.matrix))
        y = torch.zeros(NUM_CLASSES) if self.labels is None else torch.from_numpy(self.labels[pos].astype(np.float32))
        return x, y
