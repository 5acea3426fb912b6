"""The submission file: per-class cut-offs fitted on OOF predictions, applied to test, validated, uploaded.

``write_submission`` writes ``Id,Predicted`` with exactly the Ids and order of
``sample_submission.csv`` (validated before it replaces anything) and a JSON
sidecar with the source, the cut-offs and the OOF macro-F1 estimate; where the
dataset ships hidden test labels (the synthetic demo) the sidecar holds the
test macro-F1 too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution import thresholds
from solution.classes import NUM_CLASSES
from solution.data.layout import parse_target, read_rows, read_sample_submission
from solution.errors import ArtifactError, ConfigError
from solution.fileio import atomic_path, file_hash, read_json
from solution.metrics import macro_f1
from solution.predictions import STACK_NAME, list_experiments, load_aligned

COMPETITION = "human-protein-atlas-image-classification"


def format_labels(pred: np.ndarray) -> list[str]:
    """Space-separated class indices of each 0/1 row ('' where none)."""
    return [" ".join(map(str, np.flatnonzero(row))) for row in pred]


def validate_submission(path: Path, sample_path: Path) -> None:
    """Re-read a written submission: header, the Ids and order of sample_submission.csv, valid labels."""
    rows = read_rows(path, ("Id", "Predicted"))
    if [image_id for _, image_id, _ in rows] != read_sample_submission(sample_path):
        raise ArtifactError(f"{path}: Ids differ from {sample_path} (count or order)")
    for line, _, text in rows:
        if text:
            parse_target(text, f"{path}:{line}")


def upload(path: Path, message: str) -> str:
    """Submit with the official Kaggle client (needs ``pip install kaggle`` and ~/.kaggle/kaggle.json)."""
    if shutil.which("kaggle") is None:
        raise ArtifactError(
            "--submit needs the Kaggle client: `pip install kaggle` and an API token in ~/.kaggle/kaggle.json"
        )
    cmd = ["kaggle", "competitions", "submit", "-c", COMPETITION, "-f", str(path), "-m", message]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ArtifactError(f"Kaggle upload failed ({' '.join(cmd)}): {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def default_source(oof_dir: Path) -> str:
    if (oof_dir / STACK_NAME / "manifest.json").is_file():
        return STACK_NAME
    experiments = list_experiments(oof_dir)
    if not experiments:
        raise ArtifactError(
            f"no predictions in {oof_dir}/: run scripts/train_folds.sh (and python -m solution.stack) first"
        )
    raise ArtifactError(
        f"no stack in {oof_dir}/: run python -m solution.stack, or pick --source from {', '.join(experiments)}"
    )


def _most_frequent_class_f1(hidden: np.ndarray, train_labels: np.ndarray) -> float:
    """The test macro-F1 of predicting the training set's most frequent class for every image: a floor."""
    top = np.eye(NUM_CLASSES, dtype=np.uint8)[train_labels.sum(0).argmax()]
    return macro_f1(hidden, np.tile(top, (len(hidden), 1)))


def check_out(out: Path) -> None:
    """The submission path: a ``.csv`` file (its sidecar is the same name with ``.json``), not a folder."""
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: a submission is a .csv file (its sidecar goes beside it as .json)")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the .csv file to write")


def write_pair(out: Path, submission: pd.DataFrame, summary: dict[str, Any], sample_path: Path) -> None:
    """The CSV (validated first) and its sidecar, renamed into place together; the sidecar records the CSV's hash."""
    with atomic_path(out) as csv_tmp, atomic_path(out.with_suffix(".json")) as json_tmp:
        submission.to_csv(csv_tmp, index=False)
        validate_submission(csv_tmp, sample_path)
        json_tmp.write_text(json.dumps({**summary, "csv_sha256": file_hash(csv_tmp)}, indent=2) + "\n")


def check_pair(out: Path) -> dict[str, Any]:
    """The sidecar of a written submission, refused when it does not describe the CSV beside it."""
    summary = read_json(out.with_suffix(".json"))
    if not out.is_file() or file_hash(out) != summary.get("csv_sha256"):
        raise ArtifactError(f"{out} is not the file {out.with_suffix('.json')} describes: write it again")
    return summary


def write_submission(source: str, out: Path, oof_dir: Path, folds_dir: Path, data_dir: Path | None) -> dict[str, Any]:
    """Write the submission and its sidecar; returns the sidecar's content.

    Everything, the hidden-label score included, is computed before either file is replaced.
    """
    check_out(out)
    loaded = load_aligned([source], oof_dir, folds_dir, data_dir)
    preds, dataset = loaded.preds[0], loaded.dataset
    cutoffs, scores = thresholds.fit_with_scores(preds.oof_probs, loaded.labels)
    test_pred = thresholds.apply(preds.test_probs, cutoffs)
    submission = pd.DataFrame({"Id": dataset.test_ids, "Predicted": format_labels(test_pred)})
    summary = {
        "source": source,
        "source_dir": str((oof_dir / source).resolve()),
        "folds_hash": loaded.folds.hash,
        "thresholds": [float(c) for c in cutoffs],
        "oof_macro_f1": float(scores.mean()),
        "oof_macro_f1_note": "per-class cut-offs fitted on the same OOF rows: an optimistic estimate",
        "test_images": len(submission),
        "test_images_without_label": int((test_pred.sum(axis=1) == 0).sum()),
        "mean_labels_per_test_image": float(test_pred.sum() / len(test_pred)),
    }
    hidden = dataset.test_labels()
    if hidden is not None:
        summary["test_macro_f1"] = macro_f1(hidden, test_pred)
        summary["test_macro_f1_most_frequent_class"] = _most_frequent_class_f1(hidden, loaded.labels)
    write_pair(out, submission, summary, dataset.root / "sample_submission.csv")
    return summary
