"""Prediction sets: ``oof/<name>/{oof,test}.parquet`` and ``manifest.json``, written and read back checked.

``oof.parquet`` holds one row per training image (predicted by the fold model
that never saw it), ``test.parquet`` one row per test image; both have columns
``Id, p0..p27`` (float32). The manifest carries the folds hash, and every
reader refuses a set made with other folds or for other Ids, naming both sides.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.folds import Folds, open_matching_dataset, read_folds
from solution.core.classes import NUM_CLASSES, PROB_COLUMNS
from solution.core.errors import ArtifactError
from solution.core.fileio import atomic_write_json, atomic_write_parquet, exclusive, file_hash, read_json
from solution.core.ids import align, check_same_ids, positions
from solution.core.workspace import STACK_NAME
from solution.data.layout import Dataset


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what made a prediction set; one schema for an experiment and the stack.

    ``settings`` holds what differs between the two: an experiment's resolved config and TTA, the stack's
    inputs and options. ``files`` maps each file of the set to the hash of the bytes written.
    """

    name: str
    kind: str  # "experiment" or "stack"
    folds_hash: str
    n_folds: int
    data_dir: str
    settings: dict[str, Any]
    provenance: dict[str, Any]  # package versions and git commit
    fold_metrics: tuple[dict[str, Any], ...] = ()
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fold_metrics": list(self.fold_metrics)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: Path) -> Manifest:
        missing = [f.name for f in fields(cls) if f.name not in obj and f.default is MISSING]
        missing = [m for m in missing if not (m == "files" or m == "fold_metrics")]
        if missing:
            raise ArtifactError(f"{where}: missing key '{missing[0]}' (written by an older kit?): rerun its stage")
        known = {f.name for f in fields(cls)}
        return cls(
            **{**{k: v for k, v in obj.items() if k in known}, "fold_metrics": tuple(obj.get("fold_metrics", ()))}
        )


@dataclass(frozen=True)
class Predictions:
    """One experiment's (or the stack's) OOF and test probabilities, rows in file order."""

    name: str
    oof: pd.DataFrame
    test: pd.DataFrame
    manifest: Manifest

    @property
    def oof_probs(self) -> np.ndarray:
        return self.oof[list(PROB_COLUMNS)].to_numpy(np.float32)

    @property
    def test_probs(self) -> np.ndarray:
        return self.test[list(PROB_COLUMNS)].to_numpy(np.float32)


def probs_frame(ids: list[str], probs: np.ndarray) -> pd.DataFrame:
    """The prediction file layout: Id, p0..p27 as float32."""
    if probs.shape != (len(ids), NUM_CLASSES):
        raise ValueError(f"expected probabilities of shape ({len(ids)}, {NUM_CLASSES}), got {probs.shape}")
    df = pd.DataFrame(probs.astype(np.float32), columns=list(PROB_COLUMNS))
    df.insert(0, "Id", list(ids))
    return df


SET_FILES = ("oof.parquet", "test.parquet")
WRITE_LOCK = ".writing.lock"  # held while a set is written


def write_predictions(out_dir: Path | str, oof: pd.DataFrame, test: pd.DataFrame, manifest: Manifest) -> None:
    """Write oof.parquet, test.parquet and, last, manifest.json with the hash of each file as written.

    A kill between the renames leaves files that disagree with the manifest, and
    every reader refuses such a mixed set: a set is all old or all new. The folder
    is locked while it is written: a second writer (two stacks at once) stops with
    an error naming the first process rather than mixing two sets.
    """
    out_dir = Path(out_dir)
    with exclusive(out_dir / WRITE_LOCK, f"prediction set {out_dir}"):
        hashes = {name: atomic_write_parquet(out_dir / name, frame) for name, frame in zip(SET_FILES, (oof, test))}
        atomic_write_json(out_dir / "manifest.json", replace(manifest, files=hashes).to_json())


def check_set(pred_dir: Path, manifest: Manifest) -> None:
    """Refuse a prediction set whose files are not the ones its manifest was written with."""
    for name, expected in manifest.files.items():
        if not (pred_dir / name).is_file() or file_hash(pred_dir / name) != expected:
            raise ArtifactError(
                f"{pred_dir}/{name} is not the file {pred_dir}/manifest.json was written with (a run killed while "
                f"writing the set, or a file replaced by hand): rerun the stage that writes {pred_dir}/"
            )


def read_probs_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a truncated or foreign file
        raise ArtifactError(f"{path}: not a readable parquet file ({exc}); rerun the stage that writes it") from exc
    expected = ["Id", *PROB_COLUMNS]
    if list(df.columns) != expected:
        raise ArtifactError(f"{path}: expected columns Id,p0..p27, got {','.join(map(str, df.columns))}")
    if df["Id"].duplicated().any():
        raise ArtifactError(f"{path}: duplicate Id {df['Id'][df['Id'].duplicated()].iloc[0]!r}")
    probs = df[list(PROB_COLUMNS)].to_numpy()
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ArtifactError(f"{path}: probabilities must be finite and within [0, 1]")
    return df


def read_predictions(pred_dir: Path | str, folds: Folds, test_ids: list[str] | None = None) -> Predictions:
    """Read one prediction set and check it against the folds (and the test Ids, if given)."""
    pred_dir = Path(pred_dir)
    manifest = Manifest.from_json(read_json(pred_dir / "manifest.json"), pred_dir / "manifest.json")
    if manifest.folds_hash != folds.hash:
        raise ArtifactError(
            f"{pred_dir}/manifest.json was made with folds {manifest.folds_hash}, but {folds.folds_dir}/folds.json is "
            f"{folds.hash}: "
            f"retrain {pred_dir.name} on the current folds (scripts/train_folds.sh)"
        )
    check_set(pred_dir, manifest)
    oof = read_probs_file(pred_dir / "oof.parquet")
    test = read_probs_file(pred_dir / "test.parquet")
    check_same_ids(folds.ids, oof["Id"].tolist(), str(folds.csv), f"{pred_dir}/oof.parquet")
    if test_ids is not None:
        check_same_ids(test_ids, test["Id"].tolist(), "the test set", f"{pred_dir}/test.parquet")
    return Predictions(name=pred_dir.name, oof=oof, test=test, manifest=manifest)


def list_experiments(oof_dir: Path | str) -> list[str]:
    """Names of the complete prediction sets under ``oof_dir`` (those with a manifest), the stack excluded."""
    oof_dir = Path(oof_dir)
    if not oof_dir.is_dir():
        return []
    return sorted(p.name for p in oof_dir.iterdir() if (p / "manifest.json").is_file() and p.name != STACK_NAME)


@dataclass(frozen=True)
class Aligned:
    """Prediction sets with everything needed to score and apply them, all rows aligned:
    OOF rows and ``labels`` in folds order, test rows in sample_submission order."""

    preds: list[Predictions]
    labels: np.ndarray
    folds: Folds
    dataset: Dataset


def _available(oof_dir: Path) -> list[str]:
    return list_experiments(oof_dir) + ([STACK_NAME] if (oof_dir / STACK_NAME / "manifest.json").is_file() else [])


def load_aligned(
    names: list[str], oof_dir: Path | str, folds_dir: Path | str, data_dir: Path | str | None = None
) -> Aligned:
    """Read prediction sets, each checked against the folds and the test Ids."""
    oof_dir = Path(oof_dir)
    folds = read_folds(folds_dir)
    dataset = open_matching_dataset(folds, data_dir)
    preds = []
    for name in names:
        if not (oof_dir / name / "manifest.json").is_file():
            available = ", ".join(_available(oof_dir)) or "none (train first)"
            raise ArtifactError(f"no predictions named {name!r} in {oof_dir}/; available: {available}")
        p = read_predictions(oof_dir / name, folds, dataset.test_ids)
        oof = align(p.oof, folds.ids, f"{oof_dir / name}/oof.parquet")
        test = align(p.test, dataset.test_ids, f"{oof_dir / name}/test.parquet")
        preds.append(Predictions(name=p.name, oof=oof, test=test, manifest=p.manifest))
    labels = dataset.train_labels[positions(dataset.train_ids, folds.ids, f"{dataset.root}/train.csv")]
    return Aligned(preds=preds, labels=labels, folds=folds, dataset=dataset)
