"""Honest macro-F1 estimates of (blend candidate, threshold rule) pairs, to pick what to submit.

Fitting cut-offs (and blend weights) on the OOF rows and scoring them on the
same rows is optimistic: the cut-offs fit the noise of exactly those rows,
most of all for rare classes. ``estimate_table`` reports that in-sample figure
beside a nested one, in which no OOF row is ever scored by a cut-off or a
weight that was fitted on it: for each fold k of the fold assignment, the
rule's cut-offs (and, for a candidate with ``refit``, its weights) are fitted
on the other folds' rows only, then applied to fold k's rows. The ``prior``
rule matches rates on the same test probabilities in every fold (a refitted
blend's test matrix is blended with that fold's weights).

Headline: ``nested_macro_f1`` is the mean over folds of each fold's macro-F1.
Each fold's figure scores one fitted set of cut-offs on unseen rows, which is
how the leaderboard scores a submission, and on a sample of similar size (a
fold of the 31,072 training images holds about 6,200; the leaderboards score
parts of the 11,702 test images), so rare classes are about as noisy as they
will be there. The pooled figure (``nested_pooled_macro_f1``: all folds'
predictions concatenated, scored once) mixes the predictions of K different
sets of cut-offs, which no submission does, and scores 31,072 rows at once,
which flatters the rare classes; it is a cross-check, and ``nested_fold_std``
(the spread of the fold scores) tells whether two figures differ at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from solution.ensemble.blend import Candidate
from solution.scoring import thresholds
from solution.scoring.metrics import macro_f1
from solution.scoring.thresholds import RuleInput, RuleOptions

COLUMNS = ("candidate", "rule", "in_sample_macro_f1", "nested_macro_f1", "nested_pooled_macro_f1", "nested_fold_std")


def _check_folds(labels: np.ndarray, fold: np.ndarray) -> np.ndarray:
    fold = np.asarray(fold)
    if fold.shape != (len(labels),) or fold.dtype.kind not in "iu":
        raise ValueError(f"fold must be one integer per OOF row ({len(labels)}), got {fold.dtype} {fold.shape}")
    folds = np.unique(fold)
    if len(folds) < 2:
        raise ValueError(f"nested estimates need at least two folds, got {folds.tolist()}")
    return folds


def _score(
    rule: str, data: RuleInput, probs: np.ndarray, labels: np.ndarray, options: RuleOptions
) -> tuple[float, np.ndarray]:
    """(macro-F1, predictions) of the rule's cut-offs fitted on ``data``, applied to ``probs``."""
    pred = thresholds.apply(probs, thresholds.fit_rule(rule, data, options), options.at_least_one)
    return macro_f1(labels, pred), pred


def _candidate_rows(
    candidate: Candidate,
    labels: np.ndarray,
    fold: np.ndarray,
    folds: np.ndarray,
    rules: Sequence[str],
    options: RuleOptions,
) -> list[dict]:
    full = RuleInput(np.asfortranarray(candidate.oof), labels, candidate.test)
    in_sample = {rule: _score(rule, full, candidate.oof, labels, options)[0] for rule in rules}
    fold_scores: dict[str, list[float]] = {rule: [] for rule in rules}
    pooled = {rule: np.zeros(labels.shape, dtype=np.uint8) for rule in rules}
    for k in folds:
        held = fold == k
        train = ~held
        if candidate.refit is None:
            model, data = candidate, full.take_rows(train)
        else:  # the weights too are fitted on the other folds only
            model = candidate.refit(train)
            data = RuleInput(np.asfortranarray(model.oof), labels, model.test).take_rows(train)
        for rule in rules:
            score, pooled[rule][held] = _score(rule, data, model.oof[held], labels[held], options)
            fold_scores[rule].append(score)
    return [
        {
            "candidate": candidate.name,
            "rule": rule,
            "in_sample_macro_f1": in_sample[rule],
            "nested_macro_f1": float(np.mean(fold_scores[rule])),
            "nested_pooled_macro_f1": macro_f1(labels, pooled[rule]),
            "nested_fold_std": float(np.std(fold_scores[rule])),
        }
        for rule in rules
    ]


def estimate_table(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    fold: np.ndarray,
    rules: Sequence[str] = tuple(thresholds.RULES),
    options: RuleOptions | None = None,
) -> pd.DataFrame:
    """One row per (candidate, rule), in the given orders, with the columns of ``COLUMNS``."""
    options = options or RuleOptions()
    for rule in rules:
        thresholds.RULES.check(rule)
    labels = np.asfortranarray(labels, dtype=np.uint8)  # column-major: the fits take class rows without a copy
    folds = _check_folds(labels, fold)
    rows = [row for c in candidates for row in _candidate_rows(c, labels, np.asarray(fold), folds, rules, options)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def pick_best(table: pd.DataFrame) -> pd.Series:
    """The row with the best nested macro-F1; draws go to the better pooled figure, then to the earlier row."""
    if table.empty:
        raise ValueError("no estimates to pick from")
    order = table.sort_values(["nested_macro_f1", "nested_pooled_macro_f1"], ascending=False, kind="stable")
    return order.iloc[0]
