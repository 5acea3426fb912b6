"""Training augmentation presets (albumentations) for four-stain uint8 images.

Augmentations run on the raw (H, W, 4) stains, before the channel setup mixes
them, so that every setup sees the same geometry. Test-time augmentation is
done on model inputs (``solution.tta``).
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A

from solution.errors import ConfigError


def _none() -> A.Compose | None:
    return None


def _flips() -> A.Compose:
    """The 8 dihedral flips/rotations."""
    return A.Compose([A.SquareSymmetry(p=1.0)])


def _light() -> A.Compose:
    """Flips plus mild affine and intensity jitter."""
    return A.Compose(
        [
            A.SquareSymmetry(p=1.0),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-20, 20), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    )


AUGMENTATIONS: dict[str, Callable[[], A.Compose | None]] = {"none": _none, "flips": _flips, "light": _light}


def train_transform(preset: str) -> A.Compose | None:
    """The albumentations pipeline of a named preset (None: no augmentation)."""
    if preset not in AUGMENTATIONS:
        raise ConfigError(f"augment: unknown preset {preset!r}; registered: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[preset]()
