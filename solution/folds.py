"""Multilabel-stratified K folds: ``python -m solution.folds --data DIR``.

Writes ``folds/folds.csv`` (Id,fold) and ``folds/folds.json`` (seed, number of
folds, a hash of the Ids and labels, a hash of the fold assignment that every
prediction set must carry, the dataset path). Existing folds made
from the same data are kept; folds made from other data are refused with the
command that remakes them (``--force``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from solution.artifacts import check_folds_match, labels_hash, read_folds, write_folds
from solution.classes import CLASS_NAMES
from solution.data.layout import open_dataset
from solution.errors import KitError


def make_folds(labels: np.ndarray, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Fold index of each row, from iterative-stratification's scikit-learn-compatible splitter."""
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if len(labels) < n_folds:
        raise ValueError(f"cannot make {n_folds} folds from {len(labels)} images")
    fold = np.full(len(labels), -1, dtype=int)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[val_idx] = k
    return fold


def prevalence_table(labels: np.ndarray, fold: np.ndarray) -> str:
    """Per-class prevalence (%) overall and in each fold, one line per class."""
    n_folds = fold.max() + 1
    head = f"{'class':<34}{'all':>7}" + "".join(f"{f'fold{k}':>7}" for k in range(n_folds))
    lines = [head]
    for c, name in enumerate(CLASS_NAMES):
        cells = [labels[:, c].mean()] + [labels[fold == k, c].mean() for k in range(n_folds)]
        lines.append(f"{c:>2} {name:<31}" + "".join(f"{100 * v:>6.2f}%" for v in cells))
    sizes = "".join(f"{int((fold == k).sum()):>7}" for k in range(n_folds))
    lines.append(f"{'images':<34}{len(fold):>7}{sizes}")
    return "\n".join(lines)


def ensure_folds(data_dir: Path, folds_dir: Path, n_folds: int, seed: int, force: bool) -> None:
    """Make folds, or keep existing ones made from the same data; refuse ones made from other data."""
    dataset = open_dataset(data_dir)
    if (folds_dir / "folds.json").is_file() and not force:
        existing = read_folds(folds_dir)
        check_folds_match(existing, dataset.train_ids, dataset.train_labels, data_dir)
        print(f"{folds_dir}/ already holds folds for {data_dir} (folds hash {existing.hash}); keeping them")
        return
    fold = make_folds(dataset.train_labels, n_folds, seed)
    data_hash = labels_hash(dataset.train_ids, dataset.train_labels)
    meta = {"seed": seed, "n_folds": n_folds, "labels_hash": data_hash, "data_dir": str(data_dir.resolve()), "n_images": len(fold)}
    folds = write_folds(folds_dir, dataset.train_ids, fold, meta)
    print(prevalence_table(dataset.train_labels, fold))
    print(f"wrote {folds_dir}/folds.csv and folds.json ({n_folds} folds, seed {seed}, folds hash {folds.hash})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make multilabel-stratified folds for a dataset in the HPA layout.")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train.csv, train/, test/, sample_submission.csv)")
    parser.add_argument("--out", type=Path, default=Path("folds"), help="folder for folds.csv and folds.json")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--force", action="store_true", help="replace existing folds")
    args = parser.parse_args(argv)
    try:
        ensure_folds(args.data, args.out, args.n_folds, args.seed, args.force)
    except (KitError, ValueError) as exc:  # ValueError: too few images for the folds
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
