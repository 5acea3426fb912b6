"""Reader and validator for a dataset in the Kaggle HPA layout.

    DIR/train.csv                    Id,Target   (Target: space-separated labels 0..27)
    DIR/train/{Id}_{stain}.png       stain in red, green, blue, yellow
    DIR/test/{Id}_{stain}.png
    DIR/sample_submission.csv        Id,Predicted (the test Ids, in scoring order)
    DIR/test_labels.csv              optional: hidden test labels (synthetic data only)

Images may be any size; .jpg/.tif files are accepted too, and RGB images (the
HPAv18 external format, where each stain is coloured) are reduced to the
stain's own colour. Every problem is a ``DatasetError`` naming the file, row or
Id and what was expected.

Pixel values become 8 bits by one rule: 8-bit images as they are; 16-bit
images scaled by their type's range (x 255 / 65535), with a warning naming the
file when its values stay below 4096 (12-bit camera data, which would come out
at most 1/16 as bright); floating-point images must hold values in [0, 1] and
are scaled by 255; any other pixel type is an error. One stain of an Id has
one file: ``x_green.png`` beside ``x_green.jpg`` is an error naming both.
Labels are ASCII digits 0..27; CSV files are UTF-8 (a BOM is allowed).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from solution.classes import NUM_CLASSES
from solution.errors import DatasetError
from solution.ids import positions

STAINS: tuple[str, ...] = ("red", "green", "blue", "yellow")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TEST_LABELS_FILE = "test_labels.csv"
SMALL_16BIT_RANGE = 4096  # a 16-bit image whose values stay below this uses 12 bits or fewer

log = logging.getLogger(__spec__.name)


def parse_target(text: str, where: str) -> list[int]:
    """Labels of one ``Target`` cell; ``where`` (file:row) names it in errors."""
    tokens = text.split()
    if not tokens:
        raise DatasetError(f"{where}: empty Target (every image needs at least one label)")
    labels = []
    for tok in tokens:
        if not (tok.isascii() and tok.isdigit()) or int(tok) >= NUM_CLASSES:
            raise DatasetError(f"{where}: bad label {tok!r} in Target {text!r}; expected integers 0..{NUM_CLASSES - 1}")
        labels.append(int(tok))
    if len(set(labels)) != len(labels):
        raise DatasetError(f"{where}: repeated label in Target {text!r}")
    return labels


def read_rows(path: Path, header: tuple[str, str]) -> list[tuple[int, str, str]]:
    """(line number, first, second) of each data row of a two-column CSV with the given header."""
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return _rows(path, csv.reader(fh), header)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _rows(path: Path, reader, header: tuple[str, str]) -> list[tuple[int, str, str]]:
    head = next(reader, None)
    if head is None or tuple(h.strip() for h in head) != header:
        raise DatasetError(f"{path}: expected header {','.join(header)}, got {','.join(head or [])!r}")
    rows, seen = [], {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != 2:
            raise DatasetError(f"{path}:{line}: expected 2 columns ({','.join(header)}), got {len(row)}: {row!r}")
        key = row[0].strip()
        if not key:
            raise DatasetError(f"{path}:{line}: empty Id")
        if key in seen:
            raise DatasetError(f"{path}:{line}: duplicate Id {key!r} (first on line {seen[key]})")
        seen[key] = line
        rows.append((line, key, row[1].strip()))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def read_labels_csv(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Ids and their (N, 28) uint8 label matrix from an ``Id,Target`` file."""
    path = Path(path)
    rows = read_rows(path, ("Id", "Target"))
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    for i, (line, _, target) in enumerate(rows):
        labels[i, parse_target(target, f"{path}:{line}")] = 1
    return [r[1] for r in rows], labels


def read_sample_submission(path: Path | str) -> list[str]:
    return [r[1] for r in read_rows(Path(path), ("Id", "Predicted"))]


def _index_images(folder: Path) -> dict[str, Path]:
    """Map '{Id}_{stain}' to its file, listing the folder once."""
    if not folder.is_dir():
        raise DatasetError(f"missing image folder: {folder}")
    index: dict[str, Path] = {}
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in IMAGE_EXTENSIONS:
            if stem in index:
                raise DatasetError(f"two files for one stain: {index[stem]} and {entry.path}; keep one of them")
            index[stem] = Path(entry.path)
    return index


def _stain_paths(folder: Path, ids: list[str], exact: bool) -> dict[str, tuple[Path, ...]]:
    """Each Id's four stain files; with ``exact``, images of Ids not in ``ids`` are an error too."""
    index = _index_images(folder)
    if exact:
        listed = set(ids)
        extra = sorted({stem.rsplit("_", 1)[0] for stem in index} - listed)
        if extra:
            raise DatasetError(
                f"{folder}: holds images of {len(extra)} Id(s) not in sample_submission.csv (e.g. {extra[0]!r})"
            )
    paths = {}
    for image_id in ids:
        missing = [s for s in STAINS if f"{image_id}_{s}" not in index]
        if missing:
            raise DatasetError(f"{folder}: image {image_id} has no {', '.join(f'{image_id}_{s}.png' for s in missing)}")
        paths[image_id] = tuple(index[f"{image_id}_{s}"] for s in STAINS)
    return paths


@dataclass(frozen=True)
class Dataset:
    """A validated dataset directory: Ids, train labels and the files of every stain."""

    root: Path
    train_ids: list[str]
    train_labels: np.ndarray
    test_ids: list[str]
    paths: dict[str, dict[str, tuple[Path, ...]]] = field(repr=False)

    def image_paths(self, split: str, image_id: str) -> tuple[Path, ...]:
        return self.paths[split][image_id]

    def test_labels(self) -> np.ndarray | None:
        """Hidden test labels, aligned to ``test_ids``, where the dataset ships them (synthetic data)."""
        path = self.root / TEST_LABELS_FILE
        if not path.is_file():
            return None
        ids, labels = read_labels_csv(path)
        return labels[positions(ids, self.test_ids, str(path), DatasetError)]


def open_train_only(root: Path | str) -> Dataset:
    """A dataset of ``train.csv`` and ``train/`` only (extra training data such as HPAv18), no test split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    ids, labels = read_labels_csv(root / "train.csv")
    paths = {"train": _stain_paths(root / "train", ids, exact=False), "test": {}}
    return Dataset(root=root, train_ids=ids, train_labels=labels, test_ids=[], paths=paths)


def open_dataset(root: Path | str) -> Dataset:
    """Read and validate the CSVs and check that every image has its four stain files."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    train_ids, train_labels = read_labels_csv(root / "train.csv")
    test_ids = read_sample_submission(root / "sample_submission.csv")
    overlap = set(train_ids) & set(test_ids)
    if overlap:
        raise DatasetError(f"{root}: Id {sorted(overlap)[0]!r} is in both train.csv and sample_submission.csv")
    paths = {
        "train": _stain_paths(root / "train", train_ids, exact=False),
        "test": _stain_paths(root / "test", test_ids, exact=True),
    }
    return Dataset(root=root, train_ids=train_ids, train_labels=train_labels, test_ids=test_ids, paths=paths)


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


def stain_plane(img: np.ndarray, stain: str, path: Path | str) -> np.ndarray:
    """One 8-bit plane from a decoded image (``path`` names it in errors): grey as is, colour
    (OpenCV's BGR order) reduced to the stain's colour: red from R, green from G, blue from B,
    yellow from the mean of R and G; other bit depths by the module docstring's rule."""
    if img.ndim == 2 and img.dtype == np.uint8:
        return img  # the competition's own PNGs: no copy (the cache build decodes every image once)
    scale = _to_8bit_scale(img, path)
    if img.ndim == 3:
        b, g, r = (img[..., i].astype(np.float32) for i in range(3))  # OpenCV decodes as BGR
        plane = {"red": r, "green": g, "blue": b, "yellow": (r + g) / 2}[stain]
    elif img.ndim == 2:
        plane = img.astype(np.float32)
    else:
        raise DatasetError(f"{path}: unexpected image shape {img.shape}")
    return np.clip(np.rint(plane * scale), 0, 255).astype(np.uint8)


def read_image(paths: tuple[Path, ...], size: int) -> np.ndarray:
    """The four stains of one image as a (size, size, 4) uint8 array in R, G, B, Y order."""
    out = np.empty((size, size, len(STAINS)), dtype=np.uint8)
    for c, (stain, path) in enumerate(zip(STAINS, paths)):
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
