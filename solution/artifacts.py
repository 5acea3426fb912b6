"""Artifact I/O shared by every stage: atomic writes, folds, and prediction files.

Every artifact is written to a temporary name in its folder and renamed into
place, so a killed run leaves either the old file or the new one, never half of
one. Every reader checks what it reads against the folds it belongs to and
refuses mismatches with a message that names both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from solution.classes import NUM_CLASSES, PROB_COLUMNS
from solution.data.layout import Dataset, open_dataset
from solution.errors import ArtifactError

STACK_NAME = "stack"  # the stacker's folder under oof/, beside the experiments'


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: Path | str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def atomic_write_parquet(path: Path | str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_json(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from exc


# ---------------------------------------------------------------- folds


def labels_hash(ids: list[str], labels: np.ndarray) -> str:
    """A hash of the (Id, label set) pairs, independent of row order."""
    rows = sorted(f"{i},{' '.join(map(str, np.flatnonzero(row)))}" for i, row in zip(ids, labels))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def folds_hash(ids: list[str], fold: np.ndarray, data_hash: str) -> str:
    """A hash of the fold assignment and the data it splits: predictions carry it to prove their folds."""
    rows = sorted(f"{i},{int(f)}" for i, f in zip(ids, fold))
    return hashlib.sha256("\n".join([data_hash, *rows]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Folds:
    ids: list[str]
    fold: np.ndarray  # (N,) int, fold index of each Id
    meta: dict[str, Any]  # folds.json: seed, n_folds, labels_hash, folds_hash, data_dir, ...

    @property
    def n_folds(self) -> int:
        return int(self.meta["n_folds"])

    @property
    def hash(self) -> str:
        """The folds hash (assignment and data) that every prediction set must carry."""
        return str(self.meta["folds_hash"])

    @property
    def labels_hash(self) -> str:
        """The hash of the Ids and labels the folds were made from."""
        return str(self.meta["labels_hash"])

    @property
    def data_dir(self) -> Path:
        return Path(self.meta["data_dir"])


def write_folds(folds_dir: Path | str, ids: list[str], fold: np.ndarray, meta: dict[str, Any]) -> Folds:
    """Write folds.csv and folds.json (``meta`` gains the folds hash); returns what was written."""
    folds_dir = Path(folds_dir)
    meta = {**meta, "folds_hash": folds_hash(ids, fold, meta["labels_hash"])}
    atomic_write_csv(folds_dir / "folds.csv", pd.DataFrame({"Id": ids, "fold": fold.astype(int)}))
    atomic_write_json(folds_dir / "folds.json", meta)
    return Folds(ids=list(ids), fold=fold.astype(int), meta=meta)


def read_folds(folds_dir: Path | str) -> Folds:
    folds_dir = Path(folds_dir)
    csv_path, json_path = folds_dir / "folds.csv", folds_dir / "folds.json"
    if not csv_path.is_file() or not json_path.is_file():
        raise ArtifactError(f"no folds in {folds_dir}/ (need folds.csv and folds.json): run `python -m solution.folds --data DIR` first")
    meta = read_json(json_path)
    df = pd.read_csv(csv_path, dtype={"Id": str})
    if list(df.columns[:2]) != ["Id", "fold"]:
        raise ArtifactError(f"{csv_path}: expected columns Id,fold, got {','.join(df.columns)}")
    for key in ("n_folds", "labels_hash", "folds_hash", "data_dir", "seed"):
        if key not in meta:
            raise ArtifactError(f"{json_path}: missing key '{key}'")
    folds = Folds(ids=df["Id"].tolist(), fold=df["fold"].to_numpy(int), meta=meta)
    if folds_hash(folds.ids, folds.fold, folds.labels_hash) != folds.hash:
        raise ArtifactError(f"{csv_path} does not match {json_path} (edited by hand?): remake both with `python -m solution.folds --data DIR --force`")
    return folds


def check_folds_match(folds: Folds, ids: list[str], labels: np.ndarray, data_dir: Path | str) -> None:
    """Refuse folds made from other Ids or labels than the dataset at ``data_dir``, saying how to remake them."""
    current = labels_hash(ids, labels)
    if current != folds.labels_hash:
        raise ArtifactError(
            f"folds/folds.json was made from other data ({folds.data_dir}, hash {folds.labels_hash}) than {data_dir} (hash {current}). "
            f"Remake them with `python -m solution.folds --data {data_dir} --force` "
            f"(predictions made with the old folds are then refused and must be retrained)"
        )


def open_matching_dataset(folds: Folds, data_dir: Path | str | None = None) -> Dataset:
    """The dataset the folds were made from (or ``data_dir``), checked against the folds."""
    data_dir = Path(data_dir) if data_dir is not None else folds.data_dir
    dataset = open_dataset(data_dir)
    check_folds_match(folds, dataset.train_ids, dataset.train_labels, data_dir)
    return dataset


# ---------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Predictions:
    """One experiment's (or the stack's) OOF and test probabilities, rows in file order."""

    name: str
    oof: pd.DataFrame
    test: pd.DataFrame
    manifest: dict[str, Any]

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


def write_predictions(out_dir: Path | str, oof: pd.DataFrame, test: pd.DataFrame, manifest: dict[str, Any]) -> None:
    """Write oof.parquet, test.parquet and, last, manifest.json (its presence marks a complete set)."""
    out_dir = Path(out_dir)
    atomic_write_parquet(out_dir / "oof.parquet", oof)
    atomic_write_parquet(out_dir / "test.parquet", test)
    atomic_write_json(out_dir / "manifest.json", manifest)


def read_probs_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    df = pd.read_parquet(path)
    expected = ["Id", *PROB_COLUMNS]
    if list(df.columns) != expected:
        raise ArtifactError(f"{path}: expected columns Id,p0..p27, got {','.join(map(str, df.columns))}")
    if df["Id"].duplicated().any():
        raise ArtifactError(f"{path}: duplicate Id {df['Id'][df['Id'].duplicated()].iloc[0]!r}")
    probs = df[list(PROB_COLUMNS)].to_numpy()
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ArtifactError(f"{path}: probabilities must be finite and within [0, 1]")
    return df


def check_same_ids(expected: list[str], got: list[str], expected_name: str, got_name: str) -> None:
    """Refuse two Id sets that differ, naming both sides and an example of the difference."""
    e, g = set(expected), set(got)
    if e == g:
        return
    missing, extra = sorted(e - g), sorted(g - e)
    detail = []
    if missing:
        detail.append(f"{len(missing)} Id(s) of {expected_name} missing from {got_name} (e.g. {missing[0]})")
    if extra:
        detail.append(f"{len(extra)} Id(s) in {got_name} not in {expected_name} (e.g. {extra[0]})")
    raise ArtifactError("Id sets differ: " + "; ".join(detail))


def read_predictions(pred_dir: Path | str, folds: Folds, test_ids: list[str] | None = None) -> Predictions:
    """Read one prediction set and check it against the folds (and the test Ids, if given)."""
    pred_dir = Path(pred_dir)
    manifest = read_json(pred_dir / "manifest.json")
    got_hash = manifest.get("folds_hash")
    if got_hash != folds.hash:
        raise ArtifactError(
            f"{pred_dir}/manifest.json was made with folds {got_hash}, but folds/folds.json is {folds.hash}: "
            f"retrain {pred_dir.name} on the current folds (scripts/train_folds.sh)"
        )
    oof = read_probs_file(pred_dir / "oof.parquet")
    test = read_probs_file(pred_dir / "test.parquet")
    check_same_ids(folds.ids, oof["Id"].tolist(), "folds/folds.csv", f"{pred_dir}/oof.parquet")
    if test_ids is not None:
        check_same_ids(test_ids, test["Id"].tolist(), "the test set", f"{pred_dir}/test.parquet")
    return Predictions(name=pred_dir.name, oof=oof, test=test, manifest=manifest)


def align(df: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Rows of ``df`` reordered to ``ids`` (the Id sets must already match)."""
    return df.set_index("Id").loc[ids].reset_index()


def run_info() -> dict[str, Any]:
    """Package versions and git commit, recorded in every manifest."""
    versions = {}
    for pkg in ("torch", "timm", "segmentation-models-pytorch", "albumentations", "lightgbm", "numpy", "pandas", "numba"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"packages": versions, "git_commit": commit}


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


def load_aligned(names: list[str], oof_dir: Path | str, folds_dir: Path | str, data_dir: Path | str | None = None) -> Aligned:
    """Read prediction sets, each checked against the folds and the test Ids."""
    oof_dir = Path(oof_dir)
    folds = read_folds(folds_dir)
    dataset = open_matching_dataset(folds, data_dir)
    preds = []
    for name in names:
        if not (oof_dir / name / "manifest.json").is_file():
            available = list_experiments(oof_dir) + ([STACK_NAME] if (oof_dir / STACK_NAME / "manifest.json").is_file() else [])
            raise ArtifactError(f"no predictions named {name!r} in {oof_dir}/; available: {', '.join(available) or 'none (train first)'}")
        p = read_predictions(oof_dir / name, folds, dataset.test_ids)
        preds.append(Predictions(name=p.name, oof=align(p.oof, folds.ids), test=align(p.test, dataset.test_ids), manifest=p.manifest))
    row = {i: n for n, i in enumerate(dataset.train_ids)}
    labels = dataset.train_labels[[row[i] for i in folds.ids]]
    return Aligned(preds=preds, labels=labels, folds=folds, dataset=dataset)
