"""Bundles: one submission's models and recipe in a self-contained folder, for predicting without the training
outputs (``python -m solution.export``, then ``python -m solution.predict --bundle``).

    BUNDLE/bundle.json                                the manifest (``BundleManifest``): the recipe and the hash of
                                                      every other file; written last, it marks the folder as a bundle
    BUNDLE/submission.json                            the exported submission's sidecar (what made it, its estimates)
    BUNDLE/experiments/<exp>/fold<k>/checkpoint.pt    each fold model's weights and the stain statistics it was
                                                      trained with (plain tensors: ``torch.load(weights_only=True)``)
    BUNDLE/experiments/<exp>/oof.parquet              its OOF probabilities (``Id, p0..p27``, folds order): the blends
                                                      are fitted on them (rank_mean's distributions, hill_climb's picks)
    BUNDLE/labels.csv                                 ``Id,Target`` of the OOF rows, in their order
    BUNDLE/stack/class<c>_fold<k>.txt                 the stack's LightGBM boosters (a stack pick only)
    BUNDLE/twins.csv                                  ``Id,Target``: the labels test images take from their twins
                                                      (a twins submission only)
    BUNDLE/test_groups.csv                            ``Id,group``: test images averaged within their duplicate group
                                                      (``--average-test-twins`` only)

The folder is written whole or not at all (``atomic_dir``), and ``read_bundle`` checks every file against the
manifest's hashes, naming the first that differs. This module never imports torch: a checkpoint is bytes here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from solution.core.errors import ArtifactError
from solution.core.fileio import atomic_dir, atomic_write_json, file_hash, read_json

MANIFEST = "bundle.json"
SIDECAR = "submission.json"
LABELS = "labels.csv"
TWINS = "twins.csv"
TEST_GROUPS = "test_groups.csv"
FORMAT = 1


def experiments_dir(bundle: Path) -> Path:
    """The folder of the experiments, laid out as ``runs/`` (``<exp>/fold<k>/checkpoint.pt``) for ``FoldRun``."""
    return bundle / "experiments"


def oof_path(bundle: Path, experiment: str) -> Path:
    return experiments_dir(bundle) / experiment / "oof.parquet"


def booster_path(bundle: Path, c: int, k: int) -> Path:
    return bundle / "stack" / f"class{c}_fold{k}.txt"


@dataclass(frozen=True)
class StackRecipe:
    """The stack's part of a bundle: its inputs (in order), feature set, weight of LightGBM against the mean,
    and the classes it fitted (a booster per fold each; the others keep the mean)."""

    inputs: list[str]
    features: str
    blend: float
    n_folds: int
    classes: list[int]


@dataclass(frozen=True)
class BundleManifest:
    """``bundle.json``: how a bundle turns its experiments' test probabilities into the submission.

    ``experiments`` maps each experiment (in the order the blends take them) to its resolved config (the one its
    predictions were made with) and its number of folds. The candidate ``source`` is scored, then, in this
    order: test rows of one duplicate group averaged (``average_test_twins``), cut by ``cutoffs`` (with
    ``at_least_one``), and, with a ``twin_rule``, test images with a labelled twin given its labels.
    """

    source: str
    rule: str  # the threshold rule that fitted ``cutoffs``: a record, not refitted
    folds_hash: str
    experiments: dict[str, dict[str, Any]]
    cutoffs: list[float]
    at_least_one: bool
    submission: str  # the exported CSV's name ...
    csv_sha256: str  # ... and its hash, which the bundle reproduces on the same test images
    provenance: dict[str, Any]
    stack: StackRecipe | None = None
    average_test_twins: bool = False
    twin_rule: str | None = None
    format: int = FORMAT
    files: dict[str, str] = field(default_factory=dict)  # every other file of the bundle -> its hash

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any, where: Path) -> BundleManifest:
        if not isinstance(obj, dict):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in missing if name not in obj]
        if missing or obj.get("format") != FORMAT:
            raise ArtifactError(
                f"{where}: not a bundle of this kit (format {obj.get('format')!r}, expected {FORMAT}; "
                f"missing: {', '.join(missing) or 'none'}): export it again with python -m solution.export"
            )
        values = {f.name: obj[f.name] for f in fields(cls) if f.name in obj}
        stack = values.get("stack")
        return cls(**{**values, "stack": None if stack is None else StackRecipe(**stack)})


def write_bundle(out: Path, manifest: BundleManifest, fill: Callable[[Path], None]) -> BundleManifest:
    """Write a bundle: ``fill`` writes every file into a temporary folder, the manifest records their hashes and
    goes in last, and the folder replaces ``out`` whole (an existing ``out`` only if it is a bundle). Returns the
    manifest written."""
    with atomic_dir(out, MANIFEST) as tmp:
        fill(tmp)
        files = {p.relative_to(tmp).as_posix(): file_hash(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = replace(manifest, files=files)
        atomic_write_json(tmp / MANIFEST, manifest.to_json())
    return manifest


def read_bundle(bundle: Path) -> BundleManifest:
    """The manifest of a bundle whose every file is the one it was written with; else an ``ArtifactError``
    naming the file that is missing or changed. Other files are left alone (a Kaggle dataset's
    ``dataset-metadata.json`` sits beside them)."""
    if not (bundle / MANIFEST).is_file():
        raise ArtifactError(f"{bundle} is not a bundle (no {MANIFEST}): make one with python -m solution.export")
    manifest = BundleManifest.from_json(read_json(bundle / MANIFEST), bundle / MANIFEST)
    for name, expected in manifest.files.items():
        path = bundle / name
        if not path.is_file() or file_hash(path) != expected:
            what = "is missing" if not path.is_file() else "differs from the file the bundle was written with"
            raise ArtifactError(f"{path} {what} ({bundle / MANIFEST} records its hash): export the bundle again")
    return manifest


def write_id_table(path: Path, column: str, rows: dict[str, Any]) -> None:
    """A two-column ``Id,<column>`` CSV of a bundle (``twins.csv``, ``test_groups.csv``)."""
    pd.DataFrame({"Id": list(rows), column: list(rows.values())}).to_csv(path, index=False)


def read_id_table(path: Path, column: str) -> dict[str, str]:
    """The rows of ``write_id_table``'s file, each value as text."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != ["Id", column]:
        raise ArtifactError(f"{path}: expected columns Id,{column}, got {','.join(frame.columns)}")
    return dict(zip(frame["Id"], frame[column]))
