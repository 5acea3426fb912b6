"""Training augmentation presets for four-stain uint8 images.

A preset has two parts. Random flips/rotations (the 8 dihedral transforms) run
batched on the training device (``solution.data.batch``), after the workers;
per-image warps and intensity changes (albumentations) run in the workers on
the raw (H, W, 4) stains, before the channel setup mixes them, so that every
setup sees the same geometry. Test-time augmentation is ``solution.tta``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A

from solution.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    worker: Callable[[], A.Compose | None]  # the per-image albumentations pipeline (None: nothing per image)
    dihedral: bool  # a random flip/rotation per image, on the device


def _nothing() -> None:
    return None


def _light() -> A.Compose:
    """Mild affine and intensity jitter."""
    return A.Compose(
        [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-20, 20), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    )


AUGMENTATIONS: dict[str, Preset] = {
    "none": Preset(_nothing, dihedral=False),
    "flips": Preset(_nothing, dihedral=True),
    "light": Preset(_light, dihedral=True),
}


def preset(name: str) -> Preset:
    if name not in AUGMENTATIONS:
        raise ConfigError(f"augment: unknown preset {name!r}; registered: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]


def train_transform(name: str) -> A.Compose | None:
    """The per-image (worker) part of a named preset; None where it has none."""
    return preset(name).worker()
