"""Multilabel-stratified K folds: ``python -m solution.folds --data DIR [--n-folds 5 --seed 42 --force]``.

Writes ``folds/folds.csv`` (Id,fold, and group where ``python -m solution.duplicates`` grouped
duplicates into ``folds/duplicates_groups.csv``) and ``folds/folds.json``, and ``folds/extra_excluded.csv``
where extra images sit out folds; see ``solution.artifacts.folds``. Existing folds made from the same data are
kept; folds made from other data are refused with the command that remakes them (``--force``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from solution.artifacts.folds import DEFAULT_MAX_FOLD_IMBALANCE, EXTRA_CONFLICTS, ensure_folds
from solution.core.cli import user_errors
from solution.core.registry import NON_NEGATIVE, SEED
from solution.core.workspace import FOLDS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make multilabel-stratified folds for a dataset in the HPA layout.")
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset directory (train.csv, train/, test/, sample_submission.csv)"
    )
    parser.add_argument("--out", type=Path, default=FOLDS_DIR, help="folder for folds.csv and folds.json")
    parser.add_argument("--n-folds", type=int, default=None, help="default: the existing folds' or 5")
    parser.add_argument("--seed", type=SEED.arg_type(int), default=None, help="default: the existing folds' or 42")
    parser.add_argument(
        "--extra",
        type=Path,
        nargs="+",
        default=None,
        help="extra training datasets (train.csv and train/, e.g. HPAv18): on the training side of every fold",
    )
    parser.add_argument(
        "--extra-conflicts",
        choices=list(EXTRA_CONFLICTS),
        default=None,
        help="an extra image whose twin in train.csv carries other labels: drop it from training, or keep it "
        "(default: the existing folds' or drop)",
    )
    parser.add_argument(
        "--max-fold-imbalance",
        type=NON_NEGATIVE.arg_type(float),
        default=DEFAULT_MAX_FOLD_IMBALANCE,
        help="refuse new folds whose largest exceeds the smallest by more than this fraction",
    )
    parser.add_argument("--force", action="store_true", help="replace existing folds")
    args = parser.parse_args(argv)
    with user_errors():
        ensure_folds(
            args.data,
            args.out,
            args.n_folds,
            args.seed,
            args.force,
            args.extra,
            args.extra_conflicts,
            args.max_fold_imbalance,
        )


if __name__ == "__main__":
    main()
