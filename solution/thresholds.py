"""Per-class probability cut-offs that maximise each class's F1 on out-of-fold predictions.

Macro-F1 is the mean of independent per-class F1 scores, so maximising each
class's F1 separately maximises the macro score. For one class the search is
exact: sort the probabilities once (descending) and sweep every cut-off, where
predicting the top k images gives F1 = 2 * TP_k / (k + P). Only cut-offs
between two distinct probabilities are candidates, so ties never split. The
sweep is O(N) after an O(N log N) sort and runs in numba.

``python -m solution.thresholds --source NAME`` prints the cut-offs and the
per-class F1 of an experiment's (or the stack's) OOF predictions.
"""

from __future__ import annotations

import argparse
import logging

import numba
import numpy as np

from solution.classes import CLASS_NAMES, NUM_CLASSES
from solution.cli import add_data_args, add_oof_arg, user_errors
from solution.predictions import load_aligned

log = logging.getLogger(__name__)


@numba.njit(cache=True)
def _best_cutoff(sorted_probs: np.ndarray, sorted_truth: np.ndarray, n_pos: int) -> tuple[float, float]:
    """Best (cut-off, F1) for probabilities sorted in descending order and their 0/1 truth."""
    n = sorted_probs.shape[0]
    best_f1 = 0.0
    best_k = 0
    tp = 0
    for k in range(1, n + 1):
        tp += sorted_truth[k - 1]
        # A cut-off after position k must separate k-1 from k: skip ties.
        if k < n and sorted_probs[k] == sorted_probs[k - 1]:
            continue
        denom = k + n_pos
        f1 = 2.0 * tp / denom
        if f1 > best_f1:
            best_f1 = f1
            best_k = k
    if best_k == 0:
        return sorted_probs[0] if n > 0 else 1.0, 0.0
    if best_k == n:
        return sorted_probs[n - 1] - 1e-6, best_f1
    return 0.5 * (sorted_probs[best_k - 1] + sorted_probs[best_k]), best_f1


@numba.njit(cache=True)
def _fit_columns(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_classes = probs.shape[1]
    cutoffs = np.empty(n_classes)
    scores = np.empty(n_classes)
    for c in range(n_classes):
        order = np.argsort(-probs[:, c], kind="mergesort")
        sp = probs[order, c]
        st = labels[order, c]
        cutoffs[c], scores[c] = _best_cutoff(sp, st, int(st.sum()))
    return cutoffs, scores


def fit_with_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut-offs and the F1 each reaches on the data it was fitted on (optimistic)."""
    probs = np.ascontiguousarray(probs, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(
            f"probs and labels must be two (N, C) arrays of one shape, got {probs.shape} and {labels.shape}"
        )
    if probs.shape[0] == 0:
        raise ValueError("cannot fit thresholds on zero rows")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return _fit_columns(probs, labels)


def fit(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class cut-offs for (N, C) probabilities and 0/1 truth; predict a label when prob > cut-off."""
    return fit_with_scores(probs, labels)[0]


def fitted_macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro-F1 with cut-offs fitted on the same rows: an optimistic estimate, comparable across predictions."""
    return float(fit_with_scores(probs, labels)[1].mean())


def apply(probs: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """0/1 predictions: probability strictly above the class's cut-off."""
    return (np.asarray(probs) > np.asarray(cutoffs)[None, :]).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="stack", help="experiment name under oof/, or 'stack'")
    add_oof_arg(parser)
    add_data_args(parser)
    args = parser.parse_args(argv)
    with user_errors():
        loaded = load_aligned([args.source], args.oof_dir, args.folds_dir, args.data)
        labels = loaded.labels
        cutoffs, scores = fit_with_scores(loaded.preds[0].oof_probs, labels)
        for c in range(NUM_CLASSES):
            positives = int(labels[:, c].sum())
            log.info(f"{c:>2} {CLASS_NAMES[c]:<32} cut-off {cutoffs[c]:.4f}  F1 {scores[c]:.3f}  positives {positives}")
        log.info(f"OOF macro-F1 with these cut-offs (fitted in-sample): {scores.mean():.4f}")


if __name__ == "__main__":
    main()
