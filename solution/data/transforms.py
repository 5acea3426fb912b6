"""Training augmentations (albumentations) for four-stain uint8 images.

Augmentations run on the raw (H, W, 4) stains, before the channel setup mixes
them, so that every setup sees the same geometry. Test-time augmentation is
done on model inputs in ``solution.predict``.
"""

from __future__ import annotations

import albumentations as A


def train_transform(level: str) -> A.Compose | None:
    """``none``: no augmentation; ``flips``: the 8 dihedral flips/rotations; ``light``: flips plus mild affine and intensity jitter."""
    if level == "none":
        return None
    ops: list[A.BasicTransform] = [A.SquareSymmetry(p=1.0)]
    if level == "light":
        ops += [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-20, 20), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    elif level != "flips":
        raise ValueError(f"unknown augmentation level {level!r}; known: none, flips, light")
    return A.Compose(ops)
