"""Submissions ``submissions/<name>.csv`` and their sidecars ``<name>.json``: written together, read back checked.

The CSV holds ``Id,Predicted`` with exactly the Ids and order of ``sample_submission.csv``; the sidecar
(a ``Sidecar``) records what made it and the hash of the CSV, so a reader refuses a CSV its sidecar does not
describe. An upload to Kaggle is recorded in the sidecar under ``kaggle``.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.core.classes import NUM_CLASSES
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import atomic_path, atomic_write_json, file_hash, read_json
from solution.core.tables import parse_target, read_rows, read_sample_submission


@dataclass(frozen=True)
class Sidecar:
    """What made a submission: the candidate and rule picked, the cut-offs, the estimates, and its upload."""

    source: str  # the candidate: an experiment, a blend or the stack
    rule: str
    why: str  # why it was picked
    options: dict[str, Any]  # the rule options
    weights: dict[str, float] | None  # a blend's weight per experiment
    folds_hash: str
    thresholds: list[float]  # the per-class cut-offs applied to the test probabilities
    oof_macro_f1: float  # in-sample: cut-offs fitted and scored on every OOF row
    nested_macro_f1: float  # cut-offs (and weights) fitted on four folds, scored on the fifth
    test_images: int
    test_images_without_label: int
    mean_labels_per_test_image: float
    mean_labels_per_train_image: float
    estimates: list[dict[str, Any]]  # every candidate x rule
    average_test_twins: dict[str, int] | None = None  # groups and images of test twins averaged before cut-offs
    twins: dict[str, Any] | None = None  # the twin rule: images changed, its OOF estimate, the twins file
    test_macro_f1: float | None = None  # where the dataset ships hidden test labels (synthetic data)
    test_macro_f1_most_frequent_class: float | None = None
    kaggle: dict[str, Any] | None = None  # the upload: competition, ref, status, public score
    csv_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any, where: Path) -> Sidecar:
        """The sidecar in ``obj`` (read from ``where``); an ``ArtifactError`` names what is missing or wrong."""
        if not isinstance(obj, dict):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in obj]
        if missing:
            raise ArtifactError(f"{where}: lacks {', '.join(missing)} (not a sidecar the kit wrote?)")
        sidecar = cls(**{f.name: obj[f.name] for f in fields(cls) if f.name in obj})
        if len(sidecar.thresholds) != NUM_CLASSES or not all(isinstance(e, dict) for e in sidecar.estimates):
            raise ArtifactError(f"{where}: needs {NUM_CLASSES} thresholds and a list of estimate rows")
        return sidecar


def sidecar_path(csv: Path) -> Path:
    return csv.with_suffix(".json")


def twins_path(out: Path) -> Path:
    """The twins submission beside a submission: ``X.csv`` -> ``X.twins.csv`` (its sidecar ``X.twins.json``)."""
    return out.with_name(f"{out.stem}.twins.csv")


def check_out(out: Path) -> None:
    """The submission path: a ``.csv`` file (its sidecar is the same name with ``.json``), not a folder."""
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: a submission is a .csv file (its sidecar goes beside it as .json)")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the .csv file to write")


def format_labels(pred: np.ndarray) -> list[str]:
    """Space-separated class indices of each 0/1 row ('' where none)."""
    return [" ".join(map(str, np.flatnonzero(row))) for row in pred]


def write_csv(path: Path, ids: list[str], pred: np.ndarray, scores: pd.DataFrame | None = None) -> None:
    """``Id,Predicted`` (``format_labels``) to ``path`` as is (the caller makes it atomic), then the columns of
    ``scores`` where given (a bundle's table of probabilities): the one writer of a submission's bytes."""
    frame = pd.DataFrame({"Id": ids, "Predicted": format_labels(pred)})
    frame = frame if scores is None else pd.concat([frame, scores.reset_index(drop=True)], axis=1)
    frame.to_csv(path, index=False)


def read_labels(path: Path) -> tuple[list[str], np.ndarray]:
    """The Ids and (N, 28) 0/1 rows of a submission CSV (``Id,Predicted``; an empty cell is no label)."""
    rows = read_rows(path, ("Id", "Predicted"))
    pred = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    for i, (line, _, text) in enumerate(rows):
        if text:
            pred[i, parse_target(text, f"{path}:{line}")] = 1
    return [r[1] for r in rows], pred


def validate_submission(path: Path, sample_path: Path) -> None:
    """Re-read a written submission: header, valid labels, and the Ids and order of ``sample_path``."""
    ids, _ = read_labels(path)
    if ids != read_sample_submission(sample_path):
        raise ArtifactError(f"{path}: Ids differ from {sample_path} (count or order)")


def write_pair(out: Path, ids: list[str], pred: np.ndarray, sidecar: Sidecar, sample_path: Path) -> Sidecar:
    """The CSV (re-read and checked against ``sample_path`` first) and its sidecar with the CSV's hash, renamed
    into place together; returns the sidecar written."""
    with atomic_path(out) as csv_tmp, atomic_path(sidecar_path(out)) as json_tmp:
        write_csv(csv_tmp, ids, pred)
        validate_submission(csv_tmp, sample_path)
        sidecar = replace(sidecar, csv_sha256=file_hash(csv_tmp))
        json_tmp.write_text(json.dumps(sidecar.to_json(), indent=2) + "\n")
    return sidecar


def read_sidecar(out: Path) -> Sidecar:
    """The sidecar of a written submission, refused when it does not describe the CSV beside it."""
    sidecar = Sidecar.from_json(read_json(sidecar_path(out)), sidecar_path(out))
    if not out.is_file() or file_hash(out) != sidecar.csv_sha256:
        raise ArtifactError(f"{out} is not the file {sidecar_path(out)} describes: write it again")
    return sidecar


@dataclass(frozen=True)
class Submission:
    """A written submission, checked: its Ids, its 0/1 rows and its sidecar."""

    path: Path
    ids: list[str]
    pred: np.ndarray
    sidecar: Sidecar


def read_submission(path: Path) -> Submission:
    """Read a submission and its sidecar; any problem (missing, unreadable, not described) is an ``ArtifactError``."""
    if not path.is_file():
        raise ArtifactError(f"missing submission file: {path}")
    sidecar = read_sidecar(path)
    ids, pred = read_labels(path)
    return Submission(path, ids, pred, sidecar)


def newest_submission(folder: Path) -> Path | None:
    """The most recently written ``*.csv`` in ``folder`` that has a sidecar beside it, if any."""
    pairs = [p for p in folder.glob("*.csv") if sidecar_path(p).is_file()] if folder.is_dir() else []
    return max(pairs, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def record_upload(out: Path, record: dict[str, Any]) -> None:
    """Merge ``record`` (competition, ref, status, public score) into the ``kaggle`` record of the sidecar of
    ``out``, rewritten atomically; refused when the sidecar no longer describes the CSV."""
    sidecar = read_sidecar(out)
    atomic_write_json(sidecar_path(out), replace(sidecar, kaggle={**(sidecar.kaggle or {}), **record}).to_json())


def upload_record(out: Path, competition: str) -> dict[str, Any] | None:
    """The record in the sidecar of ``out`` of its upload to ``competition``; None where it was not uploaded there."""
    record = read_json(sidecar_path(out)).get("kaggle") or {}
    return record if record.get("competition") == competition and record.get("ref") else None


def latest_upload(folder: Path, competition: str) -> Path | None:
    """The submission in ``folder`` whose sidecar records the latest upload to ``competition``; None if none does."""
    uploads = [
        (record["submitted_at"], csv)
        for csv in sorted(folder.glob("*.csv"))
        if sidecar_path(csv).is_file() and (record := upload_record(csv, competition))
    ]
    return max(uploads)[1] if uploads else None
