"""The submission CSV: ``python -m solution.make_submission [--source stack|EXPERIMENT] [--out PATH] [--submit]``.

Fits per-class cut-offs on the source's OOF predictions, applies them to its
test predictions, and writes ``Id,Predicted`` with exactly the Ids and order of
``sample_submission.csv``, validated after writing, plus a JSON sidecar with
the source, the cut-offs and the OOF macro-F1 estimate. Where the dataset ships
hidden test labels (the synthetic demo), it prints the test macro-F1 too.
``--submit`` uploads the file with the Kaggle command-line client.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from solution.artifacts import STACK_NAME, atomic_path, atomic_write_json, list_experiments, load_aligned
from solution.classes import NUM_CLASSES
from solution.data.layout import parse_target, read_rows, read_sample_submission
from solution.errors import ArtifactError, KitError
from solution.metrics import macro_f1
from solution import thresholds

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


def upload(path: Path, message: str) -> None:
    """Submit with the official Kaggle client (needs ``pip install kaggle`` and ~/.kaggle/kaggle.json)."""
    if shutil.which("kaggle") is None:
        raise ArtifactError("--submit needs the Kaggle client: `pip install kaggle` and an API token in ~/.kaggle/kaggle.json")
    cmd = ["kaggle", "competitions", "submit", "-c", COMPETITION, "-f", str(path), "-m", message]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ArtifactError(f"Kaggle upload failed ({' '.join(cmd)}): {result.stderr.strip() or result.stdout.strip()}")
    print(result.stdout.strip())


def default_source(oof_dir: Path) -> str:
    if (oof_dir / STACK_NAME / "manifest.json").is_file():
        return STACK_NAME
    experiments = list_experiments(oof_dir)
    if not experiments:
        raise ArtifactError(f"no predictions in {oof_dir}/: run scripts/train_folds.sh (and python -m solution.stack) first")
    raise ArtifactError(f"no stack in {oof_dir}/: run python -m solution.stack, or pick --source from {', '.join(experiments)}")


def make_submission(source: str, out: Path, oof_dir: Path, folds_dir: Path, data_dir: Path | None) -> dict:
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
        summary["test_macro_f1_most_frequent_class"] = macro_f1(hidden, np.tile(np.eye(NUM_CLASSES, dtype=np.uint8)[loaded.labels.sum(0).argmax()], (len(hidden), 1)))
    atomic_write_json(out.with_suffix(".json"), summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the submission CSV from stacked or single-experiment predictions.")
    parser.add_argument("--source", default=None, help="'stack' (default when present) or an experiment name under oof/")
    parser.add_argument("--out", type=Path, default=None, help="submission path (default: submissions/<source>.csv)")
    parser.add_argument("--oof-dir", type=Path, default=Path("oof"))
    parser.add_argument("--folds-dir", type=Path, default=Path("folds"))
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: the one the folds were made from)")
    parser.add_argument("--submit", action="store_true", help="upload to Kaggle with the kaggle client")
    parser.add_argument("--message", default=None, help="Kaggle submission message (default: the source and OOF macro-F1)")
    args = parser.parse_args(argv)
    try:
        source = args.source or default_source(args.oof_dir)
        out = args.out or Path("submissions") / f"{source}.csv"
        summary = make_submission(source, out, args.oof_dir, args.folds_dir, args.data)
        print(f"submission: {out} ({summary['test_images']} images, {summary['mean_labels_per_test_image']:.2f} labels per image)")
        print(f"OOF macro-F1 of {source} with per-class cut-offs (fitted in-sample): {summary['oof_macro_f1']:.4f}")
        if "test_macro_f1" in summary:
            print(f"synthetic test macro-F1 (hidden labels): {summary['test_macro_f1']:.4f}  "
                  f"(predicting the most frequent class for every image: {summary['test_macro_f1_most_frequent_class']:.4f})")
        if args.submit:
            upload(out, args.message or f"{source}: OOF macro-F1 {summary['oof_macro_f1']:.4f}")
    except KitError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
