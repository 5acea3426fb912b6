"""LightGBM stacking over the OOF probabilities of several experiments.

One binary LightGBM model per class takes every experiment's 28 probabilities,
and their plain mean, as features. It is trained fold by fold on the same folds
as the experiments, so each stacked OOF prediction comes from a model that never
saw that image (nor did the first-level models whose outputs it reads); test
predictions are the mean over the fold models.
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np

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


def fit_predict_class(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], seed: int, n_jobs: int
) -> list[np.ndarray]:
    """Probabilities of one class for each matrix in ``x_eval``; a constant where training has one label value."""
    if y_train.min() == y_train.max():
        return [np.full(len(x), float(y_train[0])) for x in x_eval]
    model = lgb.LGBMClassifier(**LGB_PARAMS, random_state=seed, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x_train, y_train)
        return [model.predict_proba(x)[:, 1] for x in x_eval]


def stack(
    x_oof: np.ndarray, labels: np.ndarray, fold: np.ndarray, x_test: np.ndarray, seed: int = 0, n_jobs: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked (OOF, test) probabilities of each column of ``labels``, trained fold by fold on ``fold``."""
    n_classes = labels.shape[1]
    oof = np.zeros((len(x_oof), n_classes))
    test = np.zeros((len(x_test), n_classes))
    n_folds = int(fold.max()) + 1
    for k in range(n_folds):
        tr, va = fold != k, fold == k
        for c in range(n_classes):
            p_val, p_test = fit_predict_class(x_oof[tr], labels[tr, c], [x_oof[va], x_test], seed + k, n_jobs)
            oof[va, c] = p_val
            test[:, c] += p_test / n_folds
    return oof.astype(np.float32), test.astype(np.float32)
