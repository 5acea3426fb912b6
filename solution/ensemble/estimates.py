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

Options that change a rule's fit (``prior_rates``, ``bag``) enter the table as variants beside the rule
without them (``rule_variants``: ``prior+rates``, ``f1+bag20``, ...), so the table says whether they help.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class Variant:
    """A threshold rule with its options, under the name the table's ``rule`` column gives it."""

    name: str
    rule: str
    options: RuleOptions


def rule_variants(rules: Sequence[str], options: RuleOptions) -> list[Variant]:
    """Each rule with the options' shared adjustments alone, then, where ``options`` ask for them, the rule
    bagged (``{rule}+bag{N}``) and ``prior`` matching ``options.prior_rates`` (``prior+rates``; bagging the OOF
    rows cannot move rates that come from elsewhere)."""
    plain = replace(options, prior_rates=None, bag=0)
    variants = []
    for rule in rules:
        variants.append(Variant(rule, rule, plain))
        if options.bag:
            variants.append(Variant(f"{rule}+bag{options.bag}", rule, replace(plain, bag=options.bag)))
        if rule == "prior" and options.prior_rates is not None:
            variants.append(Variant("prior+rates", rule, replace(plain, prior_rates=options.prior_rates)))
    return variants


def _predict(variant: Variant, data: RuleInput, probs: np.ndarray) -> np.ndarray:
    """The predictions of the variant's cut-offs fitted on ``data``, applied to ``probs``."""
    cutoffs = thresholds.fit_rule(variant.rule, data, variant.options)
    return thresholds.apply(probs, cutoffs, variant.options.at_least_one)


def _fold_fits(
    candidate: Candidate, full: RuleInput, labels: np.ndarray, fold: np.ndarray
) -> Iterator[tuple[np.ndarray, Candidate, RuleInput]]:
    """Per fold k: its rows, the candidate (refitted on the other folds where it has ``refit``) and the rule
    input of the other folds' rows (a subset of ``full``, the candidate's input on every row, where not refitted)."""
    for k in _check_folds(labels, fold):
        held = fold == k
        if candidate.refit is None:
            yield held, candidate, full.take_rows(~held)
        else:  # the weights too are fitted on the other folds only
            model = candidate.refit(~held)
            yield held, model, RuleInput(np.asfortranarray(model.oof), labels, model.test).take_rows(~held)


def nested_prediction(candidate: Candidate, labels: np.ndarray, fold: np.ndarray, variant: Variant) -> np.ndarray:
    """(N, C) 0/1 OOF predictions in which each fold's rows are cut by a fit on the other folds only."""
    labels = np.asfortranarray(labels, dtype=np.uint8)
    pred = np.zeros(labels.shape, dtype=np.uint8)
    full = RuleInput(np.asfortranarray(candidate.oof), labels, candidate.test)
    for held, model, data in _fold_fits(candidate, full, labels, np.asarray(fold)):
        pred[held] = _predict(variant, data, model.oof[held])
    return pred


def _candidate_rows(
    candidate: Candidate, labels: np.ndarray, fold: np.ndarray, variants: Sequence[Variant]
) -> list[dict]:
    full = RuleInput(np.asfortranarray(candidate.oof), labels, candidate.test)
    in_sample = {v.name: macro_f1(labels, _predict(v, full, candidate.oof)) for v in variants}
    fold_scores: dict[str, list[float]] = {v.name: [] for v in variants}
    pooled = {v.name: np.zeros(labels.shape, dtype=np.uint8) for v in variants}
    for held, model, data in _fold_fits(candidate, full, labels, fold):
        for v in variants:
            pooled[v.name][held] = _predict(v, data, model.oof[held])
            fold_scores[v.name].append(macro_f1(labels[held], pooled[v.name][held]))
    return [
        {
            "candidate": candidate.name,
            "rule": v.name,
            "in_sample_macro_f1": in_sample[v.name],
            "nested_macro_f1": float(np.mean(fold_scores[v.name])),
            "nested_pooled_macro_f1": macro_f1(labels, pooled[v.name]),
            "nested_fold_std": float(np.std(fold_scores[v.name])),
        }
        for v in variants
    ]


def estimate_table(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    fold: np.ndarray,
    rules: Sequence[str] = tuple(thresholds.RULES),
    options: RuleOptions | None = None,
) -> pd.DataFrame:
    """One row per (candidate, rule variant of ``rule_variants``), in the given orders, with the columns of
    ``COLUMNS``."""
    options = options or RuleOptions()
    for rule in rules:
        thresholds.RULES.check(rule)
    labels = np.asfortranarray(labels, dtype=np.uint8)  # column-major: the fits take class rows without a copy
    _check_folds(labels, fold)
    variants = rule_variants(rules, options)
    rows = [row for c in candidates for row in _candidate_rows(c, labels, np.asarray(fold), variants)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def pick_best(table: pd.DataFrame) -> pd.Series:
    """The row with the best nested macro-F1; draws go to the better pooled figure, then to the earlier row."""
    if table.empty:
        raise ValueError("no estimates to pick from")
    order = table.sort_values(["nested_macro_f1", "nested_pooled_macro_f1"], ascending=False, kind="stable")
    return order.iloc[0]
