"""Per-class probability cut-offs for macro-F1, and the threshold rules built on them.

Macro-F1 is the mean of independent per-class F1 scores, so maximising each
class's F1 separately maximises the macro score. For one class the search is
exact: predicting the k images with the highest probabilities gives
F1 = 2 * TP_k / (k + P), and every k that does not split a tie is a candidate.
A label is predicted when prob > cut-off; a cut-off lies midway between the
lowest predicted value and the next lower distinct value.

Speed: sorting is the costly step, so a fit sorts only the rows that can
matter, and never argsorts. One pass counts each class's rows per label and
equal-width bin (``Binned``). The best set made of whole bins bounds the
class's best F1 from below, which caps the size of the best set (k rows score
at most 2P / (k + P)), so only the bins such a set can reach are sorted. A
float64 in [0, 1] has bits 62 and 63 clear and its bit pattern orders like its
value, so each (probability, label) pair packs losslessly into one int64 key,
``bits | label << 62``: one numpy sort of a class's keys yields its negatives
ascending, then its positives ascending, and a numba sweep walks both runs from
the top. The global search reuses the counts: whole-bin sets are scored from
them, and only the bins whose upper bound reaches the best are opened. Results
are those of a full sort and sweep. Probabilities must lie in [0, 1].

Threshold rules (``RULES``) turn OOF probabilities, OOF labels and the test
probabilities into per-class cut-offs:

- ``f1``: each class's exact F1-maximising cut-off on the OOF rows.
- ``prior``: each class's cut-off that makes its positive rate on the test
  probabilities match a target rate (by default the class's prevalence in the
  OOF labels), as the winning team of the competition did.
- ``global``: one cut-off for every class, the one that maximises macro-F1 over
  all classes at once.

``RuleOptions`` adjust any rule the same way: ``global_below`` sends a class
with too few OOF positives to the global cut-off, ``shrink`` pulls every
cut-off toward it, ``at_least_one`` gives an image with no label its most
likely one at apply time, ``prior_rates`` sets the ``prior`` rule's target rates
(the public leaderboard's class ratios, as the winner matched them), and ``bag``
makes each cut-off the mean over bootstrap resamples of the OOF rows (as the 8th
place averaged cut-offs over repeated CV), which steadies rare classes' cut-offs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numba
import numpy as np

from solution.core.errors import ConfigError
from solution.core.registry import FRACTION, NON_NEGATIVE, Registry

LABEL_BIT = 1 << 62
VALUE_MASK = LABEL_BIT - 1
NONE = -1  # "no value": below the bit pattern of every probability
BELOW_ALL = 1e-6  # how far under the lowest value the cut-off goes when every image is predicted
BINS = 1024  # equal-width bins over [0, 1]; a power of two, so prob * BINS is exact and bins never split a tie


@dataclass(frozen=True)
class Binned:
    """Validated probabilities and 0/1 labels as (C, N) class rows, with each class's counts over ``BINS`` bins.

    ``above[c, b, y]`` counts the rows of class c with label y in bins >= b
    (``above[:, BINS]`` is zero). "Every row in bins >= b" is a top set that a
    cut-off can select, so its F1 is both exact and achievable.
    """

    probs: np.ndarray
    labels: np.ndarray
    above: np.ndarray

    @property
    def n_pos(self) -> np.ndarray:
        return self.above[:, 0, 1]


@numba.njit(cache=True)
def _bin(p: float) -> int:
    return min(int(p * BINS), BINS - 1)


@numba.njit(cache=True)
def _count_above(probs: np.ndarray, labels: np.ndarray, above: np.ndarray) -> int:
    """Fill ``Binned.above``; 1 on a probability outside [0, 1] or NaN, 2 on a label other than 0/1."""
    n_classes, n = probs.shape
    for c in range(n_classes):
        for i in range(n):
            p = probs[c, i]
            if not (p >= 0.0 and p <= 1.0):
                return 1
            y = labels[c, i]
            if y != 0 and y != 1:
                return 2
            above[c, _bin(p), y] += 1
        for b in range(BINS - 1, -1, -1):
            above[c, b, 0] += above[c, b + 1, 0]
            above[c, b, 1] += above[c, b + 1, 1]
    return 0


def bin_columns(probs: np.ndarray, labels: np.ndarray) -> Binned:
    """Validate (N, C) probabilities in [0, 1] and 0/1 labels, and count each class's rows per bin.

    Everything after works class by class on contiguous rows; a caller that
    holds column-major (N, C) arrays (transposed views of (C, N) ones) saves the copy.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(
            f"probs and labels must be two (N, C) arrays of one shape, got {probs.shape} and {labels.shape}"
        )
    if probs.shape[0] == 0:
        raise ValueError("cannot fit thresholds on zero rows")
    probs = np.ascontiguousarray(probs.T, dtype=np.float64)
    labels = np.ascontiguousarray(labels.T)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    elif labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    above = np.zeros((probs.shape[0], BINS + 1, 2), dtype=np.int64)
    status = _count_above(probs, labels, above)
    if status == 1:
        raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    if status == 2:
        raise ValueError("labels must be 0/1")
    return Binned(probs, labels, above)


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
    """Cut-off that predicts every value >= low and none below (value bits); nothing at all when low is NONE."""
    if low == NONE:
        return _as_float(top)
    if below == NONE:
        return _as_float(low) - BELOW_ALL
    return _between(_as_float(low), _as_float(below))


@numba.njit(cache=True)
def _region_starts(above: np.ndarray) -> np.ndarray:
    """Per class, the lowest bin that its F1-best top set can reach.

    The best whole-bin set's F1, 2 TP' / (K' + P), bounds the class's best F1
    from below, and a set of k rows scores at most 2P / (k + P), so the best set
    holds at most K_max = P (K' + P) / TP' - P rows. Every row in bins above the
    bin of its lowest row belongs to it, so that bin is one whose higher bins
    hold at most K_max rows; integer arithmetic keeps the test exact. A class
    without positives keeps its top non-empty bin: its cut-off is its top value.
    """
    n_classes = above.shape[0]
    starts = np.empty(n_classes, dtype=np.int64)
    for c in range(n_classes):
        n_pos = above[c, 0, 1]
        b = BINS - 1
        if n_pos == 0:
            while above[c, b, 0] == 0:
                b -= 1
            starts[c] = b
            continue
        best_tp, best_k = 0, 1
        for b in range(BINS):
            tp, k = above[c, b, 1], above[c, b, 0] + above[c, b, 1]
            if tp * (best_k + n_pos) > best_tp * (k + n_pos):
                best_tp, best_k = tp, k
        b = 0
        while (above[c, b + 1, 0] + above[c, b + 1, 1] + n_pos) * best_tp > n_pos * (best_k + n_pos):
            b += 1
        starts[c] = b
    return starts


@numba.njit(cache=True)
def _gather(
    bits: np.ndarray, labels: np.ndarray, floors: np.ndarray, keys: np.ndarray, sizes: np.ndarray, run_pos: np.ndarray
) -> np.ndarray:
    """Pack each class's values >= floors[c] (value bits) into keys[c, :sizes[c]] as ``value bits | label << 62``.

    A float64 in [0, 1] has bits 62 and 63 clear and its bit pattern orders
    like its value, so sorting the keys yields the negatives ascending, then the
    run_pos[c] positives ascending. Returns each class's largest value under its
    floor. Branch-free: every value is written, and the slot is kept only when it counts.
    """
    n_classes, n = bits.shape
    below = np.empty(n_classes, dtype=np.int64)
    for c in range(n_classes):
        size, n_pos, low, floor = np.int64(0), np.int64(0), NONE, floors[c]
        for i in range(n):
            value = bits[c, i] & VALUE_MASK  # clears the sign of -0.0
            y = np.int64(labels[c, i])
            inside = np.int64(value >= floor)
            keys[c, size] = value | (y << 62)
            size += inside
            n_pos += y * inside
            low = max(low, value - inside * LABEL_BIT)
        sizes[c], run_pos[c], below[c] = size, n_pos, low
    return below


@numba.njit(cache=True)
def _head(row: np.ndarray, i: int, j: int, j_end: int) -> int:
    """Value bits of the larger of the two run heads, row[i] (negatives) and row[j] (positives), or NONE."""
    a = row[i] if i >= 0 else NONE
    b = row[j] & VALUE_MASK if j >= j_end else NONE
    return max(a, b)


@numba.njit(cache=True)
def _region_best(row: np.ndarray, run_pos: int, n_pos: int, below_region: int) -> tuple[float, float]:
    """(cut-off, F1) of the smallest top set of whole tie groups with the best F1, within one sorted region.

    Only sets whose lowest group holds a positive are scored: adding a group of
    negatives alone can never raise the F1.
    """
    n = row.shape[0]
    j_end = n - run_pos
    i, j = j_end - 1, n - 1
    top = _head(row, i, j, j_end)
    tp = 0
    best, low, below = 0.0, NONE, NONE
    while j >= j_end:
        v = row[j] & VALUE_MASK
        while i >= 0 and row[i] >= v:
            i -= 1
        while j >= j_end and row[j] & VALUE_MASK == v:
            j -= 1
            tp += 1
        f1 = 2.0 * tp / ((j_end - 1 - i) + (n - 1 - j) + n_pos)
        if f1 > best:
            best, low, below = f1, v, _head(row, i, j, j_end)
    return _cut(top, low, below if below != NONE else below_region), best


@numba.njit(cache=True)
def _fit_regions(
    keys: np.ndarray, sizes: np.ndarray, run_pos: np.ndarray, n_pos: np.ndarray, below: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n_classes = keys.shape[0]
    cutoffs = np.empty(n_classes)
    scores = np.empty(n_classes)
    for c in range(n_classes):
        cutoffs[c], scores[c] = _region_best(keys[c, : sizes[c]], run_pos[c], n_pos[c], below[c])
    return cutoffs, scores


def fit_binned(binned: Binned) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (cut-offs, in-sample F1): sort only the rows that the best set can reach, then sweep them."""
    n_classes = binned.probs.shape[0]
    keys = np.empty(binned.probs.shape, dtype=np.int64)
    sizes = np.empty(n_classes, dtype=np.int64)
    run_pos = np.empty(n_classes, dtype=np.int64)
    floors = (_region_starts(binned.above) / BINS).view(np.int64)  # bin(p) >= s exactly when p >= s / BINS
    below = _gather(binned.probs.view(np.int64), binned.labels, floors, keys, sizes, run_pos)
    for row, size in zip(keys, sizes):
        row[:size].sort()
    return _fit_regions(keys, sizes, run_pos, binned.n_pos, below)


@numba.njit(cache=True)
def _macro_sum(tp: np.ndarray, k: np.ndarray, n_pos: np.ndarray) -> float:
    """Sum of per-class F1 over all classes, always in class order, so equal sets give equal sums."""
    total = 0.0
    for c in range(tp.shape[0]):
        if k[c] > 0:
            total += 2.0 * tp[c] / (k[c] + n_pos[c])
    return total


@numba.njit(cache=True)
def _bin_sums(above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro sums of the whole-bin sets (bins >= b), and an upper bound on any set cut inside bin b."""
    n_pos = above[:, 0, 1]
    sums = np.empty(BINS + 1)
    bounds = np.zeros(BINS)
    for b in range(BINS + 1):
        sums[b] = _macro_sum(above[:, b, 1], above[:, b, 0] + above[:, b, 1], n_pos)
    for b in range(BINS):
        for c in range(above.shape[0]):
            if above[c, b, 1] > 0:  # at most bin b's positives, at least the rows of the bins above
                bounds[b] += 2.0 * above[c, b, 1] / (above[c, b + 1, 0] + above[c, b + 1, 1] + n_pos[c])
    return sums, bounds


@numba.njit(cache=True)
def _collect(probs: np.ndarray, bits: np.ndarray, labels: np.ndarray, refine: np.ndarray):
    """(value bits, bin, class, label) of every row of every class that falls in a bin marked for refinement."""
    n_classes, n = probs.shape
    count = 0
    for c in range(n_classes):
        for i in range(n):
            count += refine[_bin(probs[c, i])]
    values = np.empty(count, dtype=np.int64)
    bins = np.empty(count, dtype=np.int64)
    classes = np.empty(count, dtype=np.int64)
    positive = np.empty(count, dtype=np.bool_)
    m = 0
    for c in range(n_classes):
        for i in range(n):
            b = _bin(probs[c, i])
            if refine[b]:
                values[m], bins[m], classes[m], positive[m] = bits[c, i] & VALUE_MASK, b, c, labels[c, i] == 1
                m += 1
    return values, bins, classes, positive


@numba.njit(cache=True)
def _global_sweep(above, sums, refine, values, bins, classes, positive) -> tuple[float, int, int]:
    """(best macro sum, bin b, value v) over every candidate set, scanned from the smallest set up.

    The winner is "bins >= b" when v is NONE, else "values >= v"; the empty
    set is b = BINS. Within a refined bin, the sets whose lowest group holds a
    positive are scored exactly; the first maximum, the highest cut-off, wins.
    """
    n_classes = above.shape[0]
    n_pos = above[:, 0, 1]
    k = np.empty(n_classes, dtype=np.int64)
    tp = np.empty(n_classes, dtype=np.int64)
    best, best_b, best_v = 0.0, BINS, NONE
    m = 0
    for b in range(BINS - 1, -1, -1):
        if refine[b]:
            for c in range(n_classes):
                tp[c], k[c] = above[c, b + 1, 1], above[c, b + 1, 0] + above[c, b + 1, 1]
            while m < values.shape[0] and bins[m] == b:
                v = values[m]
                any_positive = False
                while m < values.shape[0] and values[m] == v:
                    k[classes[m]] += 1
                    tp[classes[m]] += positive[m]
                    any_positive |= positive[m]
                    m += 1
                if any_positive:
                    total = _macro_sum(tp, k, n_pos)
                    if total > best:
                        best, best_b, best_v = total, b, v
        if sums[b] > best:
            best, best_b, best_v = sums[b], b, NONE
    return best, best_b, best_v


@numba.njit(cache=True)
def _set_cut(probs: np.ndarray, bits: np.ndarray, b: int, v: int) -> float:
    """Cut-off of the set "values >= v" (or "bins >= b" when v is NONE) over all classes."""
    top, low, below = NONE, VALUE_MASK, NONE
    n_classes, n = probs.shape
    for c in range(n_classes):
        for i in range(n):
            value = bits[c, i] & VALUE_MASK
            top = max(top, value)
            inside = value >= v if v != NONE else _bin(probs[c, i]) >= b
            if inside:
                low = min(low, value)
            else:
                below = max(below, value)
    return _cut(top, NONE if low == VALUE_MASK else low, below)


def global_binned(binned: Binned) -> tuple[float, float]:
    """(cut-off, in-sample macro-F1) of the single cut-off that maximises macro-F1 over all classes at once.

    Exact: the whole-bin sets are scored from the counts, and only the bins
    whose upper bound reaches the best of those are opened and swept row by row.
    The best cut-off sits just under some positive's value, since raising it
    past values that are negative in every class only removes false positives.
    """
    sums, bounds = _bin_sums(binned.above)
    refine = (bounds >= sums.max()) & (bounds > 0)  # a bin without positives holds no candidate
    bits = binned.probs.view(np.int64)
    collected = _collect(binned.probs, bits, binned.labels, refine)
    order = np.argsort(collected[0])[::-1]  # descending values; numpy's sort is the fast one
    best, b, v = _global_sweep(binned.above, sums, refine, *(a[order] for a in collected))
    return _set_cut(binned.probs, bits, b, v), best / binned.probs.shape[0]


def fit_with_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut-offs and the F1 each reaches on the data it was fitted on (optimistic)."""
    return fit_binned(bin_columns(probs, labels))


def fit(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class cut-offs for (N, C) probabilities in [0, 1] and 0/1 truth; predict a label when prob > cut-off."""
    return fit_with_scores(probs, labels)[0]


def fitted_macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro-F1 with cut-offs fitted on the same rows: an optimistic estimate, comparable across predictions."""
    return float(fit_with_scores(probs, labels)[1].mean())


def global_cutoff(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(cut-off, in-sample macro-F1) of the best single cut-off shared by all classes."""
    return global_binned(bin_columns(probs, labels))


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
    - ``global_below``: a class with fewer OOF positives than this gets the global
      cut-off instead of its own (before any shrink), because a cut-off fitted on
      a handful of positives mostly fits their noise.
    - ``at_least_one``: at apply time, an image with no label gets its top class by margin (see ``apply``).
    - ``prior_rates``: the ``prior`` rule's target positive rate per class; None: the OOF prevalence.
    - ``bag``: each cut-off is the mean of the rule's cut-offs fitted on ``bag`` bootstrap resamples of the
      OOF rows (drawn from a generator seeded with ``BAG_SEED``: the same rows give the same cut-offs); 0: off.
    """

    shrink: float = 0.0
    global_below: int = 0
    at_least_one: bool = False
    prior_rates: tuple[float, ...] | None = None
    bag: int = 0

    def __post_init__(self) -> None:
        FRACTION.check("shrink", self.shrink)
        for key in ("global_below", "bag"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key} must be an integer (0: off), got {value!r}")
            NON_NEGATIVE.check(key, value)
        if not isinstance(self.at_least_one, bool):
            raise ConfigError(f"at_least_one must be true or false, got {self.at_least_one!r}")
        for rate in self.prior_rates or ():
            FRACTION.check("prior_rates", rate)


@dataclass(frozen=True, eq=False)
class RuleInput:
    """What every rule gets: OOF probabilities and labels to fit on, and the test probabilities to be cut.

    The binned OOF columns, the global fit and the sorted test columns are
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
    def oof_binned(self) -> Binned:
        return bin_columns(self.oof_probs, self.oof_labels)

    @cached_property
    def global_fit(self) -> tuple[float, float]:
        return global_binned(self.oof_binned)

    @cached_property
    def test_sorted(self) -> np.ndarray:
        """(C, M) test probabilities of each class, ascending."""
        columns = np.sort(np.asarray(self.test_probs, dtype=np.float64).T, axis=1)
        if not (columns[:, 0] >= 0).all() or not (columns[:, -1] <= 1).all():  # NaN sorts last
            raise ValueError("test probabilities must lie in [0, 1] (no NaN)")
        return columns

    def take_rows(self, rows: np.ndarray) -> RuleInput:
        """The same input restricted to the OOF rows of a boolean mask, or to the rows at given positions
        (repeats allowed: a bootstrap resample), sharing the test side's sort.

        Rows are taken per class, so column-major inputs stay column-major (see ``bin_columns``).
        """
        rows = np.asarray(rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        probs, labels = (np.take(a.T, index, axis=1).T for a in (self.oof_probs, self.oof_labels))
        subset = RuleInput(probs, labels, self.test_probs)
        if "test_sorted" in self.__dict__:
            subset.__dict__["test_sorted"] = self.test_sorted
        return subset


def _f1_rule(data: RuleInput, options: RuleOptions) -> np.ndarray:
    """Each class's exact F1-maximising cut-off on the OOF rows."""
    return fit_binned(data.oof_binned)[0]


def _global_rule(data: RuleInput, options: RuleOptions) -> np.ndarray:
    """One cut-off for all classes: the one that maximises OOF macro-F1."""
    return np.full(data.oof_binned.n_pos.shape, data.global_fit[0])


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
    """Each class's cut-off whose positive rate on the test probabilities matches a target rate."""
    columns = data.test_sorted
    if options.prior_rates is None:
        rates = data.oof_binned.n_pos / data.oof_binned.probs.shape[1]
    elif len(options.prior_rates) != len(columns):
        raise ConfigError(
            f"prior_rates has {len(options.prior_rates)} rates, the predictions have {len(columns)} classes"
        )
    else:
        rates = np.asarray(options.prior_rates)
    return np.array([rate_cutoff(column, rate) for column, rate in zip(columns, rates)])


Rule = Callable[[RuleInput, RuleOptions], np.ndarray]
RULES: Registry[Rule] = Registry("rule", {"f1": _f1_rule, "prior": _prior_rule, "global": _global_rule})


BAG_SEED = 0


def _bagged(rule: str, data: RuleInput, options: RuleOptions) -> np.ndarray:
    """The mean of the rule's cut-offs (with every other option) over ``options.bag`` bootstrap resamples."""
    rng = np.random.default_rng(BAG_SEED)
    n, single = len(data.oof_labels), replace(options, bag=0)
    return np.mean([fit_rule(rule, data.take_rows(rng.integers(0, n, n)), single) for _ in range(options.bag)], axis=0)


def fit_rule(rule: str, data: RuleInput, options: RuleOptions = RuleOptions()) -> np.ndarray:
    """Per-class cut-offs of a rule of ``RULES``, after the options' fallback and shrink toward the global cut-off
    (on each bootstrap resample, then averaged, where ``options.bag`` asks for them)."""
    if options.bag:
        return _bagged(rule, data, options)
    cutoffs = RULES[rule](data, options)
    if options.global_below == 0 and options.shrink == 0.0:
        return cutoffs
    shared = data.global_fit[0]
    cutoffs = np.where(data.oof_binned.n_pos < options.global_below, shared, cutoffs)
    return (1.0 - options.shrink) * cutoffs + options.shrink * shared


def compile_kernels() -> None:
    """Compile the numba kernels of every rule for what the kit passes (0/1 labels as bool or int64, one class
    or several), or load them from numba's cache. Setup runs it at install (scripts/setup.sh), so that no
    command's first fit, nor each of the test suite's processes, pays the compile: seconds per process."""
    probs = np.random.default_rng(0).random((16, 4))
    for columns in (probs, probs[:, :1]):
        for labels in (columns > 0.5, (columns > 0.5).astype(np.int64)):
            data = RuleInput(columns, labels, columns)
            for rule in RULES:
                fit_rule(rule, data)
