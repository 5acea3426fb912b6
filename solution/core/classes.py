"""The 28 HPA protein-localisation classes: the one place the class table lives."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

NUM_CLASSES = 28


@dataclass(frozen=True)
class HpaClass:
    label: int
    name: str
    train_count: int
    train_fraction: float
    hpav18_count: int


def _load() -> tuple[HpaClass, ...]:
    text = resources.files("solution").joinpath("hpa2018_classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    table = tuple(
        HpaClass(
            label=int(r["label"]),
            name=r["name"],
            train_count=int(r["train_count"]),
            train_fraction=float(r["train_fraction"]),
            hpav18_count=int(r["hpav18_count"]),
        )
        for r in rows
    )
    assert [c.label for c in table] == list(range(NUM_CLASSES)), "class table must list labels 0..27"
    return table


CLASSES: tuple[HpaClass, ...] = _load()
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
PROB_COLUMNS: tuple[str, ...] = tuple(f"p{i}" for i in range(NUM_CLASSES))

# Real images carry 1..5 labels: counts of images with 1, 2, 3, 4, 5 labels in train.csv.
LABELS_PER_IMAGE_COUNTS: tuple[int, ...] = (15126, 12485, 3160, 299, 2)

# Endosomes and lysosomes are annotated together in the HPA data.
ENDOSOMES, LYSOSOMES = 9, 10
