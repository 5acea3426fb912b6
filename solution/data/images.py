"""Decoding one image's stain files into 8-bit planes.

Pixel values become 8 bits by one rule: 8-bit images as they are; 16-bit images scaled by their type's range
(x 255 / 65535), with a warning naming the file when its values stay below 4096 (12-bit camera data, which
would come out at most 1/16 as bright); floating-point images must hold values in [0, 1] and are scaled by
255; any other pixel type is an error. RGB files (the HPAv18 external format, where each stain is coloured)
are reduced to the stain's own colour. An image of more than ``MAX_PIXELS`` pixels is refused from its header,
before it is decoded (a 875 KB PNG of 30000 x 30000 pixels would take 37 s and 2.7 GB).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image

from solution.core.errors import DatasetError
from solution.data.layout import STAINS

SMALL_16BIT_RANGE = 4096  # a 16-bit image whose values stay below this uses 12 bits or fewer
MAX_PIXELS = 8192 * 8192  # the most pixels an image may have; HPA fields are at most 3072 x 3072

log = logging.getLogger(__spec__.name)


def _to_8bit_scale(img: np.ndarray, path: Path | str) -> float:
    """The factor that brings an image's values to 0..255, by the rule in the module docstring."""
    if img.dtype == np.uint8:
        return 1.0
    if img.dtype == np.uint16:
        if img.max() < SMALL_16BIT_RANGE:
            log.warning(
                f"{path}: 16-bit image whose values stay below {SMALL_16BIT_RANGE} (12-bit camera data?): scaled by "
                f"the 16-bit range it comes out at most 1/16 as bright; convert such images to 8 bits first"
            )
        return 255 / 65535
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise DatasetError(
                f"{path}: a floating-point image must hold values in [0, 1], got {img.min()}..{img.max()}"
            )
        return 255.0
    raise DatasetError(f"{path}: unsupported pixel type {img.dtype}; expected 8-bit, 16-bit or float in [0, 1]")


def check_pixels(source: Path | BinaryIO, name: Path | str) -> None:
    """Refuse an image of more than ``MAX_PIXELS`` pixels by its header, which Pillow reads without decoding
    the pixels (OpenCV has no such call); a file Pillow cannot parse is left to the decoder to judge."""
    limit = f"the limit of {MAX_PIXELS:,} pixels ({int(MAX_PIXELS**0.5)} x {int(MAX_PIXELS**0.5)})"
    try:
        with Image.open(source) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, twice its MAX_IMAGE_PIXELS, is above ours
        raise DatasetError(f"{name}: an image beyond {limit} ({exc}); resize it first") from None
    except Exception:  # not a header Pillow knows, or no file: the decoder will say what is wrong
        return
    if width * height > MAX_PIXELS:
        raise DatasetError(f"{name}: {width} x {height} pixels, beyond {limit}; resize it first")


def stain_plane(img: np.ndarray, stain: str, path: Path | str) -> np.ndarray:
    """One 8-bit plane from a decoded image (``path`` names it in errors): grey as is, colour
    (OpenCV's BGR order) reduced to the stain's colour: red from R, green from G, blue from B,
    yellow from the mean of R and G; other bit depths by the module docstring's rule."""
    if img.ndim == 2 and img.dtype == np.uint8:
        return img  # the competition's own PNGs: no copy (the cache build decodes every image once)
    scale = _to_8bit_scale(img, path)
    if img.ndim == 3:
        b, g, r = [img[..., i].astype(np.float32) for i in range(3)]  # OpenCV decodes as BGR
        planes: dict[str, np.ndarray] = {"red": r, "green": g, "blue": b, "yellow": (r + g) / 2}
        plane = planes[stain]
    elif img.ndim == 2:
        plane = img.astype(np.float32)
    else:
        raise DatasetError(f"{path}: unexpected image shape {img.shape}")
    return np.clip(np.rint(plane * scale), 0, 255).astype(np.uint8)


def read_image(paths: tuple[Path, ...], size: int) -> np.ndarray:
    """The four stains of one image as a (size, size, 4) uint8 array in R, G, B, Y order."""
    out = np.empty((size, size, len(STAINS)), dtype=np.uint8)
    for c, (stain, path) in enumerate(zip(STAINS, paths)):
        check_pixels(path, path)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise DatasetError(f"unreadable image: {path} (not a valid {path.suffix} file)")
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        plane = stain_plane(img, stain, path)
        if plane.shape != (size, size):
            interp = cv2.INTER_AREA if plane.shape[0] > size else cv2.INTER_LINEAR
            plane = cv2.resize(plane, (size, size), interpolation=interp)
        out[..., c] = plane
    return out
