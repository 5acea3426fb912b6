"""LightGBM stacker over the OOF probabilities of all experiments: ``python -m solution.stack``.

One binary LightGBM model per class takes every experiment's 28 probabilities,
and their plain mean, as features. It is trained fold by fold on the same folds
as the experiments, so each stacked OOF prediction comes from a model that never
saw that image (nor did the first-level models whose outputs it reads); test
predictions are the mean over the fold models. The written stack is
``--blend`` x LightGBM + (1 - ``--blend``) x the plain mean (default 0.5): with a
few thousand OOF rows the trees are noisy, and averaging them with the mean
they correct was steadier on the demo than either alone (see the printed
table; ``--blend 1`` writes the pure LightGBM stack). Writes ``oof/stack/`` in
the same format as an experiment and prints the OOF macro-F1 of each
experiment, their plain mean, the LightGBM stack and the written blend.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import lightgbm as lgb
import numpy as np

from solution.artifacts import (
    STACK_NAME,
    list_experiments,
    load_aligned,
    probs_frame,
    run_info,
    write_predictions,
)
from solution.classes import NUM_CLASSES
from solution.errors import ArtifactError, KitError
from solution.metrics import macro_f1
from solution import thresholds

LGB_PARAMS = dict(
    n_estimators=150,
    learning_rate=0.05,
    num_leaves=8,
    min_child_samples=20,
    subsample=0.8,
    subsample_freq=1,
    colsample_bytree=0.5,
    reg_lambda=1.0,
    verbose=-1,
)


def features(probs: list[np.ndarray]) -> np.ndarray:
    """(N, 28 * (E + 1)) matrix: each experiment's probabilities side by side, then their mean."""
    return np.hstack([*probs, np.mean(probs, axis=0)])


def fit_predict_class(x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], seed: int, n_jobs: int) -> list[np.ndarray]:
    """Probabilities of one class for each matrix in ``x_eval``; a constant where training has one label value."""
    if y_train.min() == y_train.max():
        return [np.full(len(x), float(y_train[0])) for x in x_eval]
    model = lgb.LGBMClassifier(**LGB_PARAMS, random_state=seed, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x_train, y_train)
        return [model.predict_proba(x)[:, 1] for x in x_eval]


def stack(x_oof: np.ndarray, labels: np.ndarray, fold: np.ndarray, x_test: np.ndarray, seed: int = 0, n_jobs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Stacked (OOF, test) probabilities, trained fold by fold on ``fold``."""
    oof = np.zeros((len(x_oof), NUM_CLASSES))
    test = np.zeros((len(x_test), NUM_CLASSES))
    n_folds = int(fold.max()) + 1
    for k in range(n_folds):
        tr, va = fold != k, fold == k
        for c in range(NUM_CLASSES):
            p_val, p_test = fit_predict_class(x_oof[tr], labels[tr, c], [x_oof[va], x_test], seed + k, n_jobs)
            oof[va, c] = p_val
            test[:, c] += p_test / n_folds
    return oof.astype(np.float32), test.astype(np.float32)


def score_row(name: str, probs: np.ndarray, labels: np.ndarray) -> str:
    return f"{name:<28}{macro_f1(labels, probs > 0.5):>10.4f}{thresholds.fitted_macro_f1(probs, labels):>12.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stack the OOF predictions of all experiments with LightGBM.")
    parser.add_argument("--experiments", nargs="*", default=None, help="names under oof/ (default: all that have a manifest)")
    parser.add_argument("--oof-dir", type=Path, default=Path("oof"))
    parser.add_argument("--folds-dir", type=Path, default=Path("folds"))
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: the one the folds were made from)")
    parser.add_argument("--blend", type=float, default=0.5, help="weight of the LightGBM stack against the plain mean (1: LightGBM only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2, help="LightGBM threads")
    args = parser.parse_args(argv)
    if not 0 <= args.blend <= 1:
        parser.error(f"--blend must be within [0, 1], got {args.blend}")
    try:
        names = args.experiments or list_experiments(args.oof_dir)
        if not names:
            raise ArtifactError(f"no experiments in {args.oof_dir}/: run scripts/train_folds.sh first")
        loaded = load_aligned(names, args.oof_dir, args.folds_dir, args.data)
    except KitError as exc:
        sys.exit(f"error: {exc}")

    preds, labels, folds, dataset = loaded.preds, loaded.labels, loaded.folds, loaded.dataset
    oof_probs, test_probs = [p.oof_probs for p in preds], [p.test_probs for p in preds]
    mean_oof, mean_test = np.mean(oof_probs, axis=0), np.mean(test_probs, axis=0)
    lgb_oof, lgb_test = stack(features(oof_probs), labels, folds.fold, features(test_probs), args.seed, args.n_jobs)
    oof = args.blend * lgb_oof + (1 - args.blend) * mean_oof
    test = args.blend * lgb_test + (1 - args.blend) * mean_test
    manifest = {
        "experiment": STACK_NAME,
        "inputs": names,
        "folds_hash": folds.hash,
        "n_folds": folds.n_folds,
        "data_dir": str(dataset.root.resolve()),
        "lightgbm_params": LGB_PARAMS,
        "blend": args.blend,
        "seed": args.seed,
        **run_info(),
    }
    write_predictions(args.oof_dir / STACK_NAME, probs_frame(folds.ids, oof), probs_frame(dataset.test_ids, test), manifest)

    print(f"\nOOF macro-F1 ({len(labels)} images, {folds.n_folds} folds; 'fitted' = per-class cut-offs fitted on these OOF rows)")
    print(f"{'predictions':<28}{'@0.5':>10}{'fitted':>12}")
    for p in preds:
        print(score_row(p.name, p.oof_probs, labels))
    if len(preds) > 1:
        print(score_row("mean of experiments", mean_oof, labels))
    print(score_row("LightGBM stack", lgb_oof, labels))
    print(score_row(f"stack written ({args.blend:g} LightGBM)", oof, labels))
    print(f"wrote {args.oof_dir / STACK_NAME}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
