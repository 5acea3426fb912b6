"""Per-class probability cut-offs for macro-F1, and the threshold rules built on them.

Macro-F1 is the mean of independent per-class F1 scores, so maximising each
class's F1 separately maximises the macro score. For one class the search is
exact: predicting the k images with the highest probabilities gives
F1 = 2 * TP_k / (k + P), and every k that does not split a tie is a candidate.
A label is predicted when prob > cut-off; a cut-off lies midway between the
lowest predicted value and the next lower distinct value.

Speed: the sort dominates, so there is exactly one numpy sort per fit and no
argsort. A float64 in [0, 1] has bits 62 and 63 clear and its bit pattern
orders like its value, so each (probability, label) pair packs losslessly into
one int64 key, ``bits | label << 62``. Sorting a class's keys yields its
negatives ascending, then its positives ascending; a numba sweep merges both
runs from the top in O(N). Probabilities must therefore lie in [0, 1]. The
sorted keys (``SortedColumns``) also feed the global search, so the rules
below share one sort per set of OOF rows.

Threshold rules (``RULES``) turn OOF probabilities, OOF labels and the test
probabilities into per-class cut-offs:

- ``f1``: each class's exact F1-maximising cut-off on the OOF rows.
- ``prior``: each class's cut-off that makes its positive rate on the test
  probabilities match a target rate (by default the class's prevalence in the
  OOF labels), as the winning team of the competition did.
- ``global``: one cut-off for every class, the one that maximises macro-F1 over
  all classes at once.

``RuleOptions`` adjust any rule the same way: ``min_positives`` sends a class
with too few OOF positives to the global cut-off, ``shrink`` pulls every
cut-off toward it, and ``at_least_one`` gives an image with no label its most
likely one at apply time.

``python -m solution.thresholds --source NAME`` prints the cut-offs and the
per-class F1 of an experiment's (or the stack's) OOF predictions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from solution.classes import CLASS_NAMES, NUM_CLASSES
from solution.errors import ConfigError

LABEL_BIT = 1 << 62
VALUE_MASK = LABEL_BIT - 1
NONE = -1  # "no value": below the bit pattern of every probability
BELOW_ALL = 1e-6  # how far under the lowest value the cut-off goes when every image is predicted


@dataclass(frozen=True)
class SortedColumns:
    """Each class's packed keys sorted: row c holds its negatives ascending, then its n_pos[c] positives ascending."""

    keys: np.ndarray  # (C, N) int64
    n_pos: np.ndarray  # (C,) int64


@numba.njit(cache=True)
def _pack(probs: np.ndarray, bits: np.ndarray, labels: np.ndarray, keys: np.ndarray, n_pos: np.ndarray) -> int:
    """Fill the transposed keys and the positive counts; 1 on a probability outside [0, 1] or NaN, 2 on a bad label."""
    n, n_classes = probs.shape
    for i in range(n):
        for c in range(n_classes):
            p = probs[i, c]
            if not (p >= 0.0 and p <= 1.0):
                return 1
            y = labels[i, c]
            value = bits[i, c] & VALUE_MASK  # clears the sign of -0.0
            if y == 1:
                keys[c, i] = value | LABEL_BIT
                n_pos[c] += 1
            elif y == 0:
                keys[c, i] = value
            else:
                return 2
    return 0


def sort_columns(probs: np.ndarray, labels: np.ndarray) -> SortedColumns:
    """Validate (N, C) probabilities in [0, 1] and 0/1 labels, and sort each class's (probability, label) pairs."""
    probs = np.ascontiguousarray(probs, dtype=np.float64)
    labels = np.ascontiguousarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    elif labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(f"probs and labels must be two (N, C) arrays of one shape, got {probs.shape} and {labels.shape}")
    if probs.shape[0] == 0:
        raise ValueError("cannot fit thresholds on zero rows")
    keys = np.empty(probs.shape[::-1], dtype=np.int64)
    n_pos = np.zeros(probs.shape[1], dtype=np.int64)
    status = _pack(probs, probs.view(np.int64), labels, keys, n_pos)
    if status == 1:
        raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    if status == 2:
        raise ValueError("labels must be 0/1")
    keys.sort(axis=1)
    return SortedColumns(keys, n_pos)


@numba.njit(cache=True)
def _as_float(bits: int) -> float:
    return np.array([bits], dtype=np.int64).view(np.float64)[0]


@numba.njit(cache=True)
def _between(upper: float, lower: float) -> float:
    """A cut-off t with lower <= t < upper, midway where rounding allows, so that exactly the values >= upper pass."""
    mid = 0.5 * (upper + lower)
    return mid if mid < upper else lower


@numba.njit(cache=True)
def _cut(top: int, low: int, below: int) -> float:
    """Cut-off that predicts every value >= low (value bits); nothing when low is NONE."""
    if low == NONE:
        return _as_float(top)
    if below == NONE:
        return _as_float(low) - BELOW_ALL
    return _between(_as_float(low), _as_float(below))


@numba.njit(cache=True)
def _head(row: np.ndarray, i: int, j: int, j_end: int) -> int:
    """Value bits of the larger of the two run heads, row[i] (negatives) and row[j] (positives), or NONE."""
    a = row[i] if i >= 0 else NONE
    b = row[j] & VALUE_MASK if j >= j_end else NONE
    return max(a, b)


@numba.njit(cache=True)
def _class_best(row: np.ndarray, n_pos: int) -> tuple[float, float]:
    """(cut-off, F1) of one sorted key row: the smallest top set of whole tie groups with the best F1."""
    n = row.shape[0]
    j_end = n - n_pos
    i, j = j_end - 1, n - 1
    top = _head(row, i, j, j_end)
    k = tp = 0
    best, low, below = 0.0, NONE, NONE
    v = top
    while v != NONE:
        while i >= 0 and row[i] == v:
            i -= 1
            k += 1
        tp_before = tp
        while j >= j_end and row[j] & VALUE_MASK == v:
            j -= 1
            k += 1
            tp += 1
        next_v = _head(row, i, j, j_end)
        # A group without positives only adds false positives: it can never raise the F1.
        if tp > tp_before:
            f1 = 2.0 * tp / (k + n_pos)
            if f1 > best:
                best, low, below = f1, v, next_v
        v = next_v
    return _cut(top, low, below), best


@numba.njit(cache=True)
def _fit_sorted(keys: np.ndarray, n_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_classes = keys.shape[0]
    cutoffs = np.empty(n_classes)
    scores = np.empty(n_classes)
    for c in range(n_classes):
        cutoffs[c], scores[c] = _class_best(keys[c], n_pos[c])
    return cutoffs, scores


@numba.njit(cache=True)
def _below(row: np.ndarray, n_pos: int, v: int) -> int:
    """Value bits of the largest value of a sorted key row under v, or NONE."""
    j_end = row.shape[0] - n_pos
    i = np.searchsorted(row[:j_end], v) - 1
    j = j_end + np.searchsorted(row[j_end:], v | LABEL_BIT) - 1
    return _head(row, i, j, j_end)


@numba.njit(cache=True)
def _global_best(keys: np.ndarray, n_pos: np.ndarray, candidates: np.ndarray) -> tuple[float, float]:
    """(cut-off, macro-F1) of the best single cut-off; candidates are the positives' value bits, descending.

    The best cut-off sits just under some positive's value: raising it past
    values that are negative in every class only removes false positives. Each
    class adds its F1 at every candidate to a running total, classes in a fixed
    order, and the first (highest) candidate with the largest total wins, as in
    the per-class search.
    """
    n_classes, n = keys.shape
    total = np.zeros(candidates.shape[0])
    top = NONE
    for c in range(n_classes):
        j_end = n - n_pos[c]
        i, j = j_end - 1, n - 1
        top = max(top, _head(keys[c], i, j, j_end))
        k = tp = 0
        f1 = 0.0
        for u in range(candidates.shape[0]):
            v = candidates[u]
            k_before = k
            while i >= 0 and keys[c, i] >= v:
                i -= 1
                k += 1
            while j >= j_end and keys[c, j] & VALUE_MASK >= v:
                j -= 1
                k += 1
                tp += 1
            if k > k_before:
                f1 = 2.0 * tp / (k + n_pos[c])
            total[u] += f1
    if candidates.shape[0] == 0 or total.max() == 0.0:
        return _as_float(top), 0.0
    u = np.argmax(total)
    below = NONE
    for c in range(n_classes):
        below = max(below, _below(keys[c], n_pos[c], candidates[u]))
    return _cut(top, candidates[u], below), total[u] / n_classes


def fit_sorted(columns: SortedColumns) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (cut-offs, in-sample F1) from already sorted columns."""
    return _fit_sorted(columns.keys, columns.n_pos)


def global_sorted(columns: SortedColumns) -> tuple[float, float]:
    """(cut-off, in-sample macro-F1) of the single cut-off that maximises macro-F1 over all classes at once."""
    n = columns.keys.shape[1]
    positives = [row[n - p :] for row, p in zip(columns.keys, columns.n_pos)]
    candidates = np.sort(np.concatenate(positives) & VALUE_MASK)[::-1]  # repeats cost a little time, no accuracy
    return _global_best(columns.keys, columns.n_pos, np.ascontiguousarray(candidates))


def fit_with_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut-offs and the F1 each reaches on the data it was fitted on (optimistic)."""
    return fit_sorted(sort_columns(probs, labels))


def fit(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class cut-offs for (N, C) probabilities in [0, 1] and 0/1 truth; predict a label when prob > cut-off."""
    return fit_with_scores(probs, labels)[0]


def fitted_macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro-F1 with cut-offs fitted on the same rows: an optimistic estimate, comparable across predictions."""
    return float(fit_with_scores(probs, labels)[1].mean())


def global_cutoff(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(cut-off, in-sample macro-F1) of the best single cut-off shared by all classes."""
    return global_sorted(sort_columns(probs, labels))


def apply(probs: np.ndarray, cutoffs: np.ndarray, at_least_one: bool = False) -> np.ndarray:
    """0/1 predictions: probability strictly above the class's cut-off.

    With ``at_least_one``, an image with no label gets the class with the
    largest margin ``prob - cut-off`` (the one closest to its own cut-off), not
    the largest raw probability: a common class's high probabilities would
    otherwise win over a rare class whose cut-off is low. Draws go to the lower
    class index.
    """
    probs = np.asarray(probs)
    cutoffs = np.asarray(cutoffs)
    pred = probs > cutoffs[None, :]
    if at_least_one:
        empty = np.flatnonzero(~pred.any(axis=1))
        pred[empty, np.argmax(probs[empty] - cutoffs[None, :], axis=1)] = True
    return pred.astype(np.uint8)


@dataclass(frozen=True)
class RuleOptions:
    """Adjustments shared by every rule.

    - ``shrink`` in [0, 1]: each cut-off becomes ``(1 - shrink) * own + shrink * global``,
      where ``global`` is the single cut-off that maximises OOF macro-F1 over all classes.
    - ``min_positives``: a class with fewer OOF positives than this gets the global
      cut-off instead of its own (before any shrink), because a cut-off fitted on
      a handful of positives mostly fits their noise.
    - ``at_least_one``: at apply time, an image with no label gets its top class by margin (see ``apply``).
    - ``prior_rates``: the ``prior`` rule's target positive rate per class; None: the OOF prevalence.
    """

    shrink: float = 0.0
    min_positives: int = 0
    at_least_one: bool = False
    prior_rates: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.shrink <= 1.0:
            raise ConfigError(f"shrink must be in [0, 1] (0: own cut-offs, 1: the global one), got {self.shrink}")
        if isinstance(self.min_positives, bool) or not isinstance(self.min_positives, int) or self.min_positives < 0:
            raise ConfigError(f"min_positives must be an integer >= 0 (0: never fall back), got {self.min_positives!r}")
        if not isinstance(self.at_least_one, bool):
            raise ConfigError(f"at_least_one must be true or false, got {self.at_least_one!r}")
        if self.prior_rates is not None and not all(0.0 <= r <= 1.0 for r in self.prior_rates):
            raise ConfigError(f"prior_rates must be rates in [0, 1] (or unset: the OOF prevalence), got {self.prior_rates}")


@dataclass(frozen=True, eq=False)
class RuleInput:
    """What every rule gets: OOF probabilities and labels to fit on, and the test probabilities to be cut.

    The sorted OOF columns, the global fit and the sorted test columns are
    computed once, on first use, and shared by all rules fitted on this input;
    ``take_rows`` keeps the test side's sort for a subset of the OOF rows.
    """

    oof_probs: np.ndarray
    oof_labels: np.ndarray
    test_probs: np.ndarray

    def __post_init__(self) -> None:
        n_classes = np.shape(self.oof_probs)[-1]
        if np.ndim(self.test_probs) != 2 or np.shape(self.test_probs)[1] != n_classes or len(self.test_probs) == 0:
            raise ValueError(f"test_probs must be (M >= 1, {n_classes}), got {np.shape(self.test_probs)}")

    @cached_property
    def oof_sorted(self) -> SortedColumns:
        return sort_columns(self.oof_probs, self.oof_labels)

    @cached_property
    def global_fit(self) -> tuple[float, float]:
        return global_sorted(self.oof_sorted)

    @cached_property
    def test_sorted(self) -> np.ndarray:
        """(C, M) test probabilities of each class, ascending."""
        columns = np.sort(np.asarray(self.test_probs, dtype=np.float64).T, axis=1)
        if not (columns[:, 0] >= 0).all() or not (columns[:, -1] <= 1).all():  # NaN sorts last
            raise ValueError("test probabilities must lie in [0, 1] (no NaN)")
        return columns

    def take_rows(self, rows: np.ndarray) -> RuleInput:
        """The same input restricted to some OOF rows (index or mask), sharing the test side's sort."""
        subset = RuleInput(self.oof_probs[rows], self.oof_labels[rows], self.test_probs)
        if "test_sorted" in self.__dict__:
            subset.__dict__["test_sorted"] = self.test_sorted
        return subset


def _f1_rule(data: RuleInput, options: RuleOptions) -> np.ndarray:
    return fit_sorted(data.oof_sorted)[0]


def _global_rule(data: RuleInput, options: RuleOptions) -> np.ndarray:
    return np.full(data.oof_sorted.n_pos.shape, data.global_fit[0])


def rate_cutoff(column: np.ndarray, rate: float) -> float:
    """Cut-off above which round(rate * M) of the ascending values lie, or as near as ties allow (fewer on a draw)."""
    size = len(column)
    boundary = size - int(np.floor(rate * size + 0.5))  # values at index >= boundary are predicted
    if 0 < boundary < size and column[boundary - 1] == column[boundary]:
        lower = int(np.searchsorted(column, column[boundary], "left"))
        upper = int(np.searchsorted(column, column[boundary], "right"))
        boundary = upper if upper - boundary <= boundary - lower else lower
    if boundary == size:
        return float(column[-1])
    if boundary == 0:
        return float(column[0]) - BELOW_ALL
    return float(_between(column[boundary], column[boundary - 1]))


def _prior_rule(data: RuleInput, options: RuleOptions) -> np.ndarray:
    columns = data.test_sorted
    if options.prior_rates is None:
        rates = data.oof_sorted.n_pos / data.oof_sorted.keys.shape[1]
    elif len(options.prior_rates) != len(columns):
        raise ConfigError(f"prior_rates has {len(options.prior_rates)} rates, the predictions have {len(columns)} classes")
    else:
        rates = np.asarray(options.prior_rates)
    return np.array([rate_cutoff(column, rate) for column, rate in zip(columns, rates)])


Rule = Callable[[RuleInput, RuleOptions], np.ndarray]
RULES: dict[str, Rule] = {"f1": _f1_rule, "prior": _prior_rule, "global": _global_rule}


def check_rule(name: str) -> str:
    """The name itself, when it names a rule of ``RULES``."""
    if name not in RULES:
        raise ConfigError(f"unknown threshold rule {name!r}; valid rules: {', '.join(RULES)}")
    return name


def fit_rule(rule: str, data: RuleInput, options: RuleOptions = RuleOptions()) -> np.ndarray:
    """Per-class cut-offs of a rule of ``RULES``, after the options' fallback and shrink toward the global cut-off."""
    cutoffs = RULES[check_rule(rule)](data, options)
    if options.min_positives == 0 and options.shrink == 0.0:
        return cutoffs
    shared = data.global_fit[0]
    cutoffs = np.where(data.oof_sorted.n_pos < options.min_positives, shared, cutoffs)
    return (1.0 - options.shrink) * cutoffs + options.shrink * shared


def main(argv: list[str] | None = None) -> None:
    from solution.artifacts import load_aligned
    from solution.errors import KitError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="stack", help="experiment name under oof/, or 'stack'")
    parser.add_argument("--oof-dir", default="oof")
    parser.add_argument("--folds-dir", default="folds")
    args = parser.parse_args(argv)
    try:
        loaded = load_aligned([args.source], args.oof_dir, args.folds_dir)
    except KitError as exc:
        sys.exit(f"error: {exc}")
    labels = loaded.labels
    cutoffs, scores = fit_with_scores(loaded.preds[0].oof_probs, labels)
    for c in range(NUM_CLASSES):
        print(f"{c:>2} {CLASS_NAMES[c]:<32} cut-off {cutoffs[c]:.4f}  F1 {scores[c]:.3f}  positives {int(labels[:, c].sum())}")
    print(f"OOF macro-F1 with these cut-offs (fitted in-sample): {scores.mean():.4f}")


if __name__ == "__main__":
    main()
