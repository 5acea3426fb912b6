"""Reader and validator for a dataset in the Kaggle HPA layout.

    DIR/train.csv                    Id,Target   (Target: space-separated labels 0..27)
    DIR/train/{Id}_{stain}.png       stain in red, green, blue, yellow
    DIR/test/{Id}_{stain}.png
    DIR/sample_submission.csv        Id,Predicted (the test Ids, in scoring order)
    DIR/test_labels.csv              optional: hidden test labels (synthetic data only)

Images may be any size and .png, .jpg or .tif (decoded by ``solution.data.images``); one stain of an Id
has one file: ``x_green.png`` beside ``x_green.jpg`` is an error naming both. The CSVs are read by
``solution.core.tables``. Every problem is a ``DatasetError`` naming the file, row or Id and what was expected.
This module reads no pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from solution.core.classes import NUM_CLASSES
from solution.core.errors import DatasetError
from solution.core.ids import positions
from solution.core.tables import read_labels_csv, read_sample_submission

STAINS: tuple[str, ...] = ("red", "green", "blue", "yellow")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TEST_LABELS_FILE = "test_labels.csv"


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

    def ids_of(self, split: str) -> list[str]:
        """The Ids of ``split`` ("train" or "test"), in file order."""
        return {"train": self.train_ids, "test": self.test_ids}[split]

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


def open_test_images(root: Path | str) -> Dataset:
    """The images of ``root/test/`` alone (no ``train.csv`` needed): the Ids of ``sample_submission.csv`` in its
    order where the folder has one (the competition's layout; images of other Ids are an error), else every Id
    whose four stains are in ``test/``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    sample = root / "sample_submission.csv"
    if sample.is_file():
        ids = read_sample_submission(sample)
    else:
        stems = [stem.rsplit("_", 1) for stem in _index_images(root / "test") if "_" in stem]
        ids = sorted({image_id for image_id, stain in stems if stain in STAINS})
        if not ids:
            raise DatasetError(f"{root / 'test'}: no images named {{Id}}_{{stain}}.png (stains {', '.join(STAINS)})")
    paths = {"train": {}, "test": _stain_paths(root / "test", ids, exact=sample.is_file())}
    return Dataset(
        root=root, train_ids=[], train_labels=np.zeros((0, NUM_CLASSES), np.uint8), test_ids=ids, paths=paths
    )
