"""The stacker against the usual baseline: ``python -m solution.bench stack``.

Random predictions of the real size (31,072 OOF rows, 11,702 test rows, 3
experiments, 5 folds; labels with the real per-class prevalence, probabilities
that move with the labels). The baseline is the plain loop a stacker is usually
written as: one scikit-learn ``LGBMClassifier`` (default settings, one thread)
per class and fold on all 84 probabilities. The kit's stacker runs on the same
data in the same run, with the same single thread; ``stack_speedup`` is the
ratio of the two times. Both stacks' OOF macro-F1 (cut-offs fitted) are printed
so that speed is not bought with quality.
"""

from __future__ import annotations

import time
import warnings

import lightgbm as lgb
import numpy as np

from solution.core.classes import CLASSES
from solution.ensemble.stacking import stack
from solution.scoring import thresholds

N_OOF, N_TEST, N_EXPERIMENTS, N_FOLDS = 31_072, 11_702, 3, 5


def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, N, C) OOF and (E, T, C) test probabilities, (N, C) labels, (N,) folds."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([c.train_fraction for c in CLASSES])
    labels = (rng.random((N_OOF, len(CLASSES))) < prevalence).astype(np.uint8)
    shared = rng.normal(0, 1, labels.shape)

    def probs(truth: np.ndarray, noise: np.ndarray) -> np.ndarray:
        logits = 2.5 * truth - 2.5 + 0.8 * noise + rng.normal(0, 1, truth.shape)
        return (1 / (1 + np.exp(-logits))).astype(np.float32)

    oof = np.stack([probs(labels, shared) for _ in range(N_EXPERIMENTS)])
    test_truth = (rng.random((N_TEST, len(CLASSES))) < prevalence).astype(np.uint8)
    test = np.stack([probs(test_truth, rng.normal(0, 1, test_truth.shape)) for _ in range(N_EXPERIMENTS)])
    return oof, test, labels, np.arange(N_OOF) % N_FOLDS


def baseline(oof: np.ndarray, test: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The plain loop: an LGBMClassifier per class and fold on every probability of every experiment."""
    x, x_test = np.concatenate(list(oof), axis=1), np.concatenate(list(test), axis=1)
    out = np.zeros(labels.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(N_FOLDS):
            tr, va = fold != k, fold == k
            for c in range(labels.shape[1]):
                model = lgb.LGBMClassifier(n_jobs=1, verbose=-1, random_state=k).fit(x[tr], labels[tr, c])
                out[va, c] = np.asarray(model.predict_proba(x[va]))[:, 1]
                model.predict_proba(x_test)
    return out


def run() -> dict[str, float]:
    oof, test, labels, fold = synthetic()
    start = time.perf_counter()
    ours = stack(oof, labels, fold, test, n_jobs=1).oof
    kit_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = baseline(oof, test, labels, fold)
    baseline_s = time.perf_counter() - start
    f1_ours, f1_theirs = thresholds.fitted_macro_f1(ours, labels), thresholds.fitted_macro_f1(theirs, labels)
    print(f"{'stacker (31,072 x 3 experiments, 5 folds)':<44}{'seconds':>10}{'OOF macro-F1':>14}")
    print(f"{'kit (solution.ensemble.stacking.stack)':<44}{kit_s:>10.1f}{f1_ours:>14.4f}")
    print(f"{'LGBMClassifier per class and fold, 84 features':<44}{baseline_s:>10.1f}{f1_theirs:>14.4f}")
    return {
        "stack_seconds": kit_s,
        "stack_baseline_seconds": baseline_s,
        "stack_speedup": baseline_s / kit_s,
        "stack_macro_f1_minus_baseline": f1_ours - f1_theirs,
    }
