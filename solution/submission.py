"""The submission file: per-class cut-offs fitted on OOF predictions, applied to test, validated, uploaded.

``write_submission`` writes ``Id,Predicted`` with exactly the Ids and order of
``sample_submission.csv`` (validated before it replaces anything) and a JSON
sidecar with the source, the cut-offs and the OOF macro-F1 estimate; where the
dataset ships hidden test labels (the synthetic demo) the sidecar holds the
test macro-F1 too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution import thresholds
from solution.classes import NUM_CLASSES
from solution.data.layout import parse_target, read_rows, read_sample_submission
from solution.errors import ArtifactError
from solution.fileio import atomic_path, atomic_write_json
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


def write_submission(source: str, out: Path, oof_dir: Path, folds_dir: Path, data_dir: Path | None) -> dict[str, Any]:
    """Write the submission and its sidecar; returns the sidecar's content."""
    loaded = load_aligned([source], oof_dir, folds_dir, data_dir)
    preds, dataset = loaded.preds[0], loaded.dataset
    cutoffs, scores = thresholds.fit_with_scores(preds.oof_probs, loaded.labels)
    test_pred = thresholds.apply(preds.test_probs, cutoffs)
    submission = pd.DataFrame({"Id": dataset.test_ids, "Predicted": format_labels(test_pred)})
    with atomic_path(out) as tmp:  # validated before it replaces anything
        submission.to_csv(tmp, index=False)
        validate_submission(tmp, dataset.root / "sample_submission.csv")
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
    atomic_write_json(out.with_suffix(".json"), summary)
    return summary
