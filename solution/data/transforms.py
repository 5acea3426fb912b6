"""Training augmentation presets for four-stain uint8 images: their registry, free of albumentations, which
only the processes that build a pipeline load (``solution.data.augment.train_transform``).

A preset has two parts. Random flips/rotations (the 8 dihedral transforms) run
batched on the training device (``solution.data.batch``), after the workers;
per-image warps and intensity changes (albumentations, ``solution.data.augment``)
run in the workers on the raw (H, W, 4) stains, before the channel setup mixes
them, so that every setup sees the same geometry. Test-time augmentation is
``solution.training.tta``.
"""

from __future__ import annotations

from dataclasses import dataclass

from solution.core.registry import Registry


@dataclass(frozen=True)
class Preset:
    pipeline: str | None  # its per-image pipeline in ``solution.data.augment.PIPELINES`` (None: nothing per image)
    dihedral: bool  # a random flip/rotation per image, on the device


AUGMENTATIONS: Registry[Preset] = Registry(
    "augment",
    {
        "none": Preset(None, dihedral=False),
        "flips": Preset(None, dihedral=True),
        "light": Preset("light", dihedral=True),
        "strong": Preset("strong", dihedral=True),
    },
)
