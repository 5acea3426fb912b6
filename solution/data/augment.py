"""The per-image augmentation pipelines of the presets (``solution.data.transforms``), in albumentations, run
in the loader workers on the raw (H, W, 4) stains. Only training imports this module: prediction and the
config (which names the presets) start without albumentations.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np

from solution.data.transforms import AUGMENTATIONS


class StainCLAHE(A.CLAHE):
    """CLAHE on each stain as its own grayscale image.

    albumentations' CLAHE takes 1 or 3 channels only (on 3 it equalises the
    lightness of their LAB conversion, a colour notion four stains do not have).
    """

    def apply(self, img: np.ndarray, clip_limit: float, **params: Any) -> np.ndarray:
        equalise = super().apply
        return np.stack([equalise(img[..., k], clip_limit, **params) for k in range(img.shape[-1])], axis=-1)


def _linear_weights(size: int, points: int) -> np.ndarray:
    """(size, points) weights that interpolate linearly, at 0..size-1, between ``points`` evenly spread knots."""
    knots = np.linspace(0, size - 1, points)
    return np.clip(1 - np.abs(np.arange(size)[:, None] - knots) / (knots[1] - knots[0]), 0, None)


class JitteredGridWarp(A.ImageOnlyTransform):
    """A smooth local warp: a ``points`` x ``points`` grid of control points spread over the image, each moved by
    a normal jitter of standard deviation ``scale`` x the image's height (vertically) and width (horizontally),
    and the displacement interpolated bilinearly between them; the border outside is black.

    It stands in for imgaug's PiecewiseAffine, with the same grid, jitter and border but bilinear instead of
    piecewise-affine interpolation: albumentations 2.x's PiecewiseAffine builds its map pixel by pixel in
    Python (about 15 s for one 512 x 512 image), by inverse-distance weighting of the points.
    """

    def __init__(self, scale: tuple[float, float] = (0.03, 0.05), points: int = 4, p: float = 0.5):
        super().__init__(p=p)
        if points < 2:
            raise ValueError(f"JitteredGridWarp needs at least 2 control points per axis, got {points}")
        self.scale = scale
        self.points = points

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, np.ndarray]:
        height, width = params["shape"][:2]
        sigma = self.py_random.uniform(*self.scale)
        dy, dx = (
            self.random_generator.normal(0.0, sigma * side, (self.points, self.points)) for side in (height, width)
        )
        wy, wx = _linear_weights(height, self.points), _linear_weights(width, self.points)
        rows, cols = np.mgrid[0:height, 0:width]
        map_x, map_y = cols + wy @ dx @ wx.T, rows + wy @ dy @ wx.T
        return {"map_x": map_x.astype(np.float32), "map_y": map_y.astype(np.float32)}

    def apply(self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def light() -> A.Compose:
    """Mild affine and intensity jitter."""
    return A.Compose(
        [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-20, 20), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    )


def strong() -> A.Compose:
    """The per-image part of the original study's ``strong_aug`` (the albumentations README example) in
    albumentations 2.x, on four stains. Its RandomRotate90, Flip and Transpose are the dihedral group: they
    run on the device as one uniform random flip/rotation per image (``Preset.dihedral``).

    The probabilities and ranges are the original's; where 2.x changed a default
    (RandomRotate90's p, GaussNoise's strength, the border of the geometric ops),
    the old one is written out. Inside a OneOf, the children's p are the weights
    of the choice. Of the ops that cannot take four channels, only CLAHE is in
    it (replaced by ``StainCLAHE``); MotionBlur, MedianBlur, Blur, Sharpen and
    Emboss filter each of the four stains as an image of its own. The example's
    final HueSaturationValue is left out: hue means nothing for four stains.
    """
    reflect = cv2.BORDER_REFLECT_101  # the old default border of ShiftScaleRotate and the distortions
    shift = (-0.0625, 0.0625)
    return A.Compose(
        [
            A.OneOf(
                [
                    # IAAAdditiveGaussianNoise (imgaug, removed): sd 1-5 % of 255, the same for a pixel's channels.
                    A.GaussNoise(std_range=(0.01, 0.05), per_channel=False, p=0.5),
                    # GaussNoise's old variance range 10-50 (in 0-255 units), as 2.x's sd range (a fraction of 255).
                    A.GaussNoise(std_range=(math.sqrt(10) / 255, math.sqrt(50) / 255), p=0.5),
                ],
                p=0.2,
            ),
            A.OneOf([A.MotionBlur(p=0.2), A.MedianBlur(blur_limit=3, p=0.1), A.Blur(blur_limit=3, p=0.1)], p=0.2),
            # ShiftScaleRotate (superseded by Affine): independent x and y shifts, one scale for both axes.
            A.Affine(
                translate_percent={"x": shift, "y": shift},
                scale=(0.8, 1.2),
                keep_ratio=True,
                rotate=(-45, 45),
                border_mode=reflect,
                p=0.2,
            ),
            A.OneOf(
                [
                    A.OpticalDistortion(distort_limit=0.05, border_mode=reflect, p=0.3),  # 2.x has no centre shift
                    A.GridDistortion(num_steps=5, distort_limit=0.3, border_mode=reflect, p=0.1),
                    JitteredGridWarp(scale=(0.03, 0.05), points=4, p=0.3),  # for IAAPiecewiseAffine (imgaug)
                ],
                p=0.2,
            ),
            A.OneOf(
                [
                    StainCLAHE(clip_limit=2, p=0.5),  # for CLAHE, which refuses four channels
                    A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=0.5),  # IAASharpen's defaults
                    A.Emboss(alpha=(0.2, 0.5), strength=(0.2, 0.7), p=0.5),  # IAAEmboss's defaults
                    A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
                ],
                p=0.3,
            ),
        ],
        p=0.5,
    )


PIPELINES = {"light": light, "strong": strong}


def train_transform(name: str) -> A.Compose | None:
    """The per-image (worker) part of the preset ``name``; None where it has none."""
    pipeline = AUGMENTATIONS[name].pipeline
    return PIPELINES[pipeline]() if pipeline is not None else None
