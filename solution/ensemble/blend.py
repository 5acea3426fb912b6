"""Blend candidates: ways of combining several experiments' predictions into one, to be compared honestly.

Given E experiments' OOF probability matrices (N x C, one row per training
image) and their test matrices (M x C), ``candidates`` returns:

- each experiment alone;
- ``mean``: the plain mean of the probabilities;
- ``rank_mean``: the mean of per-class ranks scaled to [0, 1], for experiments
  whose probabilities live on different scales. A value's rank is its
  experiment's empirical CDF on that class's OOF values (the fraction of OOF
  values <= it), linearly interpolated between neighbouring OOF values; test
  values are ranked within the same OOF distribution (they are not ranked among
  themselves), so OOF and test share one scale and a cut-off fitted on the OOF
  ranks means the same on the test ranks;
- ``hill_climb``: Caruana-style ensemble selection with replacement: start
  from nothing and, for a fixed number of iterations (``HILL_ITERATIONS``),
  add the experiment whose addition gives the best OOF macro-F1 with fitted
  per-class cut-offs (first experiment on a draw, so the result is
  deterministic). The blend is the mean of the picks, so an experiment's
  weight is its share of them.

Only ``hill_climb`` looks at the labels, so only it carries ``refit``: the
nested estimates (``solution.ensemble.estimates``) call it to refit the weights on the
training folds alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from solution.core.errors import ConfigError
from solution.scoring import thresholds

HILL_ITERATIONS = 10
BLEND_NAMES = ("mean", "rank_mean", "hill_climb")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One way to predict: OOF (N, C) and test (M, C) probabilities.

    ``weights`` are per-experiment weights, in the order the experiments were
    given, for a linear blend of their probabilities (one-hot for a single
    experiment); None for a blend that is not linear (``rank_mean``).
    ``refit(rows)``, present when the candidate was fitted on the OOF labels,
    rebuilds it with everything fitted on those OOF rows (a boolean mask) only.
    """

    name: str
    oof: np.ndarray
    test: np.ndarray
    weights: np.ndarray | None = None
    refit: Callable[[np.ndarray], Candidate] | None = field(default=None, repr=False)


def _stack(mats: Sequence[np.ndarray], what: str) -> np.ndarray:
    shapes = {np.shape(m) for m in mats}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{what} must be (rows, classes) matrices of one shape, got shapes {sorted(shapes)}")
    return np.stack([np.asarray(m, dtype=np.float64) for m in mats])


def mean_blend(oofs: np.ndarray, tests: np.ndarray) -> Candidate:
    """The plain mean of (E, N, C) OOF and (E, M, C) test probabilities."""
    n = len(oofs)
    return Candidate("mean", oofs.mean(axis=0), tests.mean(axis=0), np.full(n, 1.0 / n))


def _ecdf_ranks(oof_column: np.ndarray, test_column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OOF and test values mapped through the OOF values' interpolated empirical CDF."""
    values, counts = np.unique(oof_column, return_counts=True)
    cdf = np.cumsum(counts) / len(oof_column)
    return np.interp(oof_column, values, cdf), np.interp(test_column, values, cdf)


def rank_mean(oofs: np.ndarray, tests: np.ndarray) -> Candidate:
    """Mean over experiments of per-class ranks in [0, 1], test ranked within the OOF distribution."""
    oof_ranks = np.empty_like(oofs)
    test_ranks = np.empty_like(tests)
    for e in range(len(oofs)):
        for c in range(oofs.shape[2]):
            oof_ranks[e, :, c], test_ranks[e, :, c] = _ecdf_ranks(oofs[e, :, c], tests[e, :, c])
    return Candidate("rank_mean", oof_ranks.mean(axis=0), test_ranks.mean(axis=0))


def hill_climb(oofs: np.ndarray, labels: np.ndarray, iterations: int = HILL_ITERATIONS) -> list[int]:
    """Caruana ensemble selection on (E, N, C) OOF probabilities: the experiment picked at each iteration."""
    if iterations < 1:
        raise ConfigError(f"the hill climb needs at least 1 iteration, got {iterations}")
    class_rows = np.ascontiguousarray(oofs.transpose(0, 2, 1))  # the fits then need no copy (see bin_columns)
    labels = np.asfortranarray(labels, dtype=np.uint8)
    picks: list[int] = []
    total = np.zeros(class_rows.shape[1:])
    trial = np.empty_like(total)
    for step in range(1, iterations + 1):
        scores = []
        for oof in class_rows:
            np.divide(np.add(total, oof, out=trial), step, out=trial)
            scores.append(thresholds.fitted_macro_f1(trial.T, labels))
        picks.append(int(np.argmax(scores)))
        total += class_rows[picks[-1]]
    return picks


def _blend_picks(mats: np.ndarray, picks: list[int]) -> np.ndarray:
    """The blend the hill climb scored: the picked matrices summed in pick order, over their number."""
    total = np.zeros(mats.shape[1:])
    for pick in picks:
        total += mats[pick]
    return total / len(picks)


def hill_climb_candidate(
    oofs: np.ndarray,
    tests: np.ndarray,
    labels: np.ndarray,
    iterations: int = HILL_ITERATIONS,
    rows: np.ndarray | None = None,
) -> Candidate:
    """The hill-climbed blend, its weights fitted on the given OOF rows (all by default), applied to every row."""
    fit_rows = slice(None) if rows is None else rows
    picks = hill_climb(oofs[:, fit_rows], labels[fit_rows], iterations)
    weights = np.bincount(picks, minlength=len(oofs)) / iterations
    refit = partial(hill_climb_candidate, oofs, tests, labels, iterations)
    return Candidate("hill_climb", _blend_picks(oofs, picks), _blend_picks(tests, picks), weights, refit)


def candidates(
    names: Sequence[str],
    oofs: Sequence[np.ndarray],
    tests: Sequence[np.ndarray],
    labels: np.ndarray,
    iterations: int = HILL_ITERATIONS,
) -> list[Candidate]:
    """Each experiment alone, then ``mean``, ``rank_mean`` and ``hill_climb`` (the blends only for E >= 2)."""
    if len(set(names)) != len(names) or set(names) & set(BLEND_NAMES):
        raise ValueError(f"experiment names must be unique and not one of {', '.join(BLEND_NAMES)}, got {list(names)}")
    if not len(names) == len(oofs) == len(tests) or not names:
        raise ValueError(
            f"need one OOF and one test matrix per experiment, got {len(names)}, {len(oofs)}, {len(tests)}"
        )
    oof_stack, test_stack = _stack(oofs, "OOF predictions"), _stack(tests, "test predictions")
    if oof_stack.shape[1:] != np.shape(labels) or test_stack.shape[2] != oof_stack.shape[2]:
        raise ValueError(
            f"OOF {oof_stack.shape[1:]}, labels {np.shape(labels)} and test {test_stack.shape[1:]} disagree"
        )
    singles = [Candidate(name, oof_stack[e], test_stack[e], np.eye(len(names))[e]) for e, name in enumerate(names)]
    if len(names) == 1:
        return singles
    blends = [
        mean_blend(oof_stack, test_stack),
        rank_mean(oof_stack, test_stack),
        hill_climb_candidate(oof_stack, test_stack, np.asarray(labels), iterations),
    ]
    return singles + blends
