"""Macro-F1, the competition metric: per-class F1, then the plain mean over all 28 classes.

A class with no true and no predicted positives scores 0, as scikit-learn's
``f1_score(average="macro", zero_division=0)`` does, so an absent class still
counts in the mean (it is not silently dropped, which would inflate the score).
"""

from __future__ import annotations

import numpy as np


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"expected two (N, C) arrays of the same shape, got {y_true.shape} and {y_pred.shape}")
    return y_true.astype(bool), y_pred.astype(bool)


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each column of two (N, C) 0/1 arrays; 0 where a class is neither true nor predicted."""
    t, p = _check(y_true, y_pred)
    tp = (t & p).sum(axis=0)
    denom = t.sum(axis=0) + p.sum(axis=0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Competition metric on two (N, C) 0/1 arrays."""
    return float(f1_per_class(y_true, y_pred).mean())
