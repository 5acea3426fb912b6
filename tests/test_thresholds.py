import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solution.core.errors import ConfigError
from solution.scoring import thresholds
from solution.scoring.metrics import f1_per_class, macro_f1
from solution.scoring.thresholds import RULES, RuleInput, RuleOptions

ROOT = Path(__file__).resolve().parents[1]


def brute_force_f1(p: np.ndarray, y: np.ndarray) -> float:
    """Best F1 of one class over every distinct cut-off, by direct evaluation."""
    candidates = np.concatenate([np.unique(p), [p.min() - 1]])
    return max(f1_per_class(y[:, None], (p > t)[:, None])[0] for t in candidates)


@pytest.mark.parametrize(
    "probs, truth, expected_f1, expected_pred",
    [
        # clean separation: cut between 0.6 and 0.4
        ([0.9, 0.6, 0.4, 0.1], [1, 1, 0, 0], 1.0, [1, 1, 0, 0]),
        # best to take the top 3: tp=2 of k=3, P=2 -> 0.8 (top 1 gives 2/3)
        ([0.9, 0.8, 0.7, 0.2], [1, 0, 1, 0], 0.8, [1, 1, 1, 0]),
        # a tie can't be split: both 0.5s go together; top-1 gives 2*1/(1+2)=2/3, top-3 gives 2*2/(3+2)=0.8
        ([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], 0.8, [1, 1, 1, 0]),
        # no positives: predict nothing
        ([0.9, 0.5, 0.1], [0, 0, 0], 0.0, [0, 0, 0]),
    ],
)
def test_fit_by_hand(probs, truth, expected_f1, expected_pred):
    p = np.array(probs)[:, None]
    y = np.array(truth)[:, None]
    cutoffs, scores = thresholds.fit_with_scores(p, y)
    assert scores[0] == pytest.approx(expected_f1)
    np.testing.assert_array_equal(thresholds.apply(p, cutoffs)[:, 0], expected_pred)


@pytest.mark.parametrize("seed", range(4))
def test_fit_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((80, 28)) < 0.2).astype(int)
    p = np.round(np.clip(0.4 * y + rng.random((80, 28)) * 0.7, 0, 1), 2)  # rounding makes ties
    cutoffs, scores = thresholds.fit_with_scores(p, y)
    for c in range(28):
        assert scores[c] == pytest.approx(brute_force_f1(p[:, c], y[:, c]))
    # the cut-offs reproduce the reported scores when applied
    assert macro_f1(y, thresholds.apply(p, cutoffs)) == pytest.approx(scores.mean())


def test_label_predicted_strictly_above_cutoff():
    assert thresholds.apply(np.array([[0.3, 0.3]]), np.array([0.3, 0.29])).tolist() == [[0, 1]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="one shape"):
        thresholds.fit(np.zeros((4, 28)), np.zeros((5, 28)))
    with pytest.raises(ValueError, match="0/1"):
        thresholds.fit(np.zeros((4, 2)), np.full((4, 2), 2))


# --- exactness on awkward distributions, the grid-search floor, the global cut-off ---


def random_case(seed: int, kind: str, n: int = 60, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.random(c) * 0.5).astype(int)
    if kind == "ties":
        p = np.round(np.clip(0.4 * y + rng.random((n, c)) * 0.7, 0, 1), 2)
    elif kind == "one_bin":  # everything inside one of the search's bins
        p = 0.5 + rng.integers(0, 4, (n, c)) * 1e-9
    elif kind == "skewed":  # most mass near 0, like real rare-class probabilities
        p = np.clip(rng.random((n, c)) ** 8 + 0.3 * y * rng.random((n, c)), 0, 1)
    else:  # "extremes": only a few values, including both ends of [0, 1]
        p = rng.choice([0.0, 0.25, 0.5, 1.0], (n, c))
    return p, y


def every_cutoff(p: np.ndarray) -> np.ndarray:
    """Every cut-off that gives a different prediction: each distinct value, and one below them all."""
    return np.concatenate([np.unique(p), [p.min() - 1]])


KINDS = ("ties", "one_bin", "skewed", "extremes")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_fit_exact_on_awkward_distributions(kind, seed):
    p, y = random_case(seed, kind)
    cutoffs, scores = thresholds.fit_with_scores(p, y)
    for c in range(p.shape[1]):
        assert scores[c] == pytest.approx(brute_force_f1(p[:, c], y[:, c]))
    np.testing.assert_allclose(f1_per_class(y, thresholds.apply(p, cutoffs)), scores)


def test_fit_never_below_a_100_point_grid():
    p, y = random_case(7, "skewed", n=400, c=28)
    grid = np.linspace(0, 1, 100)
    grid_best = np.max([f1_per_class(y, p > t) for t in grid], axis=0)
    assert (thresholds.fit_with_scores(p, y)[1] >= grid_best - 1e-12).all()


def test_fit_accepts_float32_bool_and_column_major_inputs():
    p, y = random_case(3, "ties")
    p = p.astype(np.float32)
    expected = thresholds.fit_with_scores(p.astype(np.float64), y)
    for probs, labels in ((p, y.astype(bool)), (np.asfortranarray(p), np.asfortranarray(y, dtype=np.uint8))):
        got = thresholds.fit_with_scores(probs, labels)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_probabilities_outside_unit_interval_are_refused(bad):
    p = np.full((3, 2), 0.5)
    p[1, 1] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        thresholds.fit(p, np.zeros((3, 2), dtype=int))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_global_cutoff_matches_brute_force(kind, seed):
    p, y = random_case(seed, kind)
    cutoff, score = thresholds.global_cutoff(p, y)
    best = max(macro_f1(y, p > t) for t in every_cutoff(p))
    assert score == pytest.approx(best)
    assert macro_f1(y, p > cutoff) == pytest.approx(best)


def test_global_cutoff_by_hand():
    # t in (0.6, 0.8): class 0 F1 1, class 1 predicts nothing, 0 -> mean 0.5
    # t in (0.4, 0.6): class 0 2*2/(3+2) = 0.8, class 1 predicts only its 0.6, a negative -> 0.4
    # t in (0.3, 0.4): class 0 0.8, class 1 2*1/(2+1) = 2/3 -> 0.733, the best: cut midway, at 0.35
    # t in (0.2, 0.3): class 0 0.8, class 1 2*1/(3+1) = 0.5 -> 0.65
    p = np.array([[0.9, 0.1], [0.8, 0.4], [0.6, 0.6], [0.2, 0.3]])
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 0]])
    cutoff, score = thresholds.global_cutoff(p, y)
    assert cutoff == pytest.approx(0.35)
    assert score == pytest.approx((0.8 + 2 / 3) / 2)


def test_global_cutoff_without_positives_predicts_nothing():
    p = np.array([[0.2, 0.7], [0.4, 0.1]])
    cutoff, score = thresholds.global_cutoff(p, np.zeros((2, 2), dtype=int))
    assert score == 0.0
    assert thresholds.apply(p, np.full(2, cutoff)).sum() == 0


# --- threshold rules and their options ---


def rule_input(seed: int = 0, n: int = 80, m: int = 50, c: int = 4) -> RuleInput:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < [0.4, 0.2, 0.05, 0.1][:c]).astype(int)
    p = np.round(np.clip(0.35 * y + 0.65 * rng.random((n, c)), 0, 1), 2)
    return RuleInput(p, y, np.round(rng.random((m, c)), 2))


def predicted_counts_nearest(column: np.ndarray, want: int) -> set[int]:
    """Every count of test predictions a cut-off can give that is nearest to want, by brute force."""
    counts = {int((column > t).sum()) for t in every_cutoff(column)}
    gap = min(abs(k - want) for k in counts)
    return {k for k in counts if abs(k - want) == gap}


def test_every_rule_has_its_own_tests():
    # A new rule needs a brute-force and a hand-worked test below before it joins this set.
    assert set(RULES) == {"f1", "prior", "global"}


def test_every_rule_returns_one_finite_cutoff_per_class():
    data = rule_input()
    for name in RULES:
        cutoffs = thresholds.fit_rule(name, data)
        assert cutoffs.shape == (4,) and np.isfinite(cutoffs).all(), name


def test_rule_f1_is_the_exact_search():
    data = rule_input(1)
    np.testing.assert_array_equal(thresholds.fit_rule("f1", data), thresholds.fit(data.oof_probs, data.oof_labels))


def test_rule_global_is_one_shared_cutoff():
    data = rule_input(2)
    expected, _ = thresholds.global_cutoff(data.oof_probs, data.oof_labels)
    np.testing.assert_array_equal(thresholds.fit_rule("global", data), np.full(4, expected))


@pytest.mark.parametrize("seed", range(3))
def test_rule_prior_matches_oof_prevalence_on_test(seed):
    data = rule_input(seed)
    cutoffs = thresholds.fit_rule("prior", data)
    predicted = (data.test_probs > cutoffs).sum(axis=0)
    for c in range(4):
        want = int(np.floor(data.oof_labels[:, c].mean() * len(data.test_probs) + 0.5))
        nearest = predicted_counts_nearest(data.test_probs[:, c], want)
        assert predicted[c] == min(nearest), c  # the nearest achievable count, the smaller on a draw


@pytest.mark.parametrize(
    "column, rate, expected_count",
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 0.3, 3),  # the top 3: cut between 0.7 and 0.8
        ([0.1, 0.2, 0.5, 0.5, 0.5, 0.9], 0.5, 4),  # want 3; the tie of three 0.5s allows 1 or 4: 4 is nearer
        ([0.1, 0.5, 0.5, 0.9], 0.5, 1),  # want 2; 1 or 3 are equally near: the fewer
        ([0.2, 0.4], 0.0, 0),
        ([0.2, 0.4], 1.0, 2),
    ],
)
def test_rate_cutoff_by_hand(column, rate, expected_count):
    column = np.array(column)
    assert (column > thresholds.rate_cutoff(column, rate)).sum() == expected_count


def test_rule_prior_uses_given_rates():
    data = rule_input(4)
    cutoffs = thresholds.fit_rule("prior", data, RuleOptions(prior_rates=(0.0, 0.5, 1.0, 0.1)))
    assert (data.test_probs > cutoffs).sum(axis=0)[[0, 2]].tolist() == [0, 50]


@pytest.mark.parametrize("rule", ["f1", "prior", "global"])
def test_bag_is_the_mean_over_seeded_bootstrap_resamples(rule):
    data = rule_input(7)
    options = RuleOptions(bag=5, shrink=0.2)
    rng = np.random.default_rng(thresholds.BAG_SEED)
    expected = []
    for _ in range(5):
        rows = rng.integers(0, 80, 80)
        fresh = RuleInput(data.oof_probs[rows], data.oof_labels[rows], data.test_probs)
        expected.append(thresholds.fit_rule(rule, fresh, RuleOptions(shrink=0.2)))
    got = thresholds.fit_rule(rule, data, options)
    np.testing.assert_allclose(got, np.mean(expected, axis=0))
    np.testing.assert_array_equal(got, thresholds.fit_rule(rule, data, options))  # deterministic
    if rule != "prior":  # prior's rates move little under resampling; the others' cut-offs move
        assert not np.allclose(got, thresholds.fit_rule(rule, data, RuleOptions(shrink=0.2)))


@pytest.mark.parametrize("rule", ["f1", "prior"])
@pytest.mark.parametrize("shrink", [0.0, 0.3, 1.0])
def test_shrink_pulls_toward_the_global_cutoff(rule, shrink):
    data = rule_input(5)
    own = thresholds.fit_rule(rule, data)
    shared, _ = thresholds.global_cutoff(data.oof_probs, data.oof_labels)
    got = thresholds.fit_rule(rule, data, RuleOptions(shrink=shrink))
    np.testing.assert_allclose(got, (1 - shrink) * own + shrink * shared)


def test_global_below_falls_back_to_the_global_cutoff():
    data = rule_input(6)
    positives = data.oof_labels.sum(axis=0)
    threshold = int(np.sort(positives)[2])  # the two rarest classes fall back
    own = thresholds.fit_rule("f1", data)
    shared, _ = thresholds.global_cutoff(data.oof_probs, data.oof_labels)
    got = thresholds.fit_rule("f1", data, RuleOptions(global_below=threshold))
    np.testing.assert_array_equal(got, np.where(positives < threshold, shared, own))
    assert (positives < threshold).sum() == 2


def test_at_least_one_adds_the_class_with_the_largest_margin():
    probs = np.array([[0.9, 0.1, 0.3], [0.2, 0.25, 0.3], [0.1, 0.1, 0.1]])
    cutoffs = np.array([0.5, 0.2, 0.4])
    # row 0 already has class 0; row 1 has class 1 (0.25 > 0.2); row 2 has none:
    # margins -0.4, -0.1, -0.3 -> class 1, though its probability ties with the others
    assert thresholds.apply(probs, cutoffs).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert thresholds.apply(probs, cutoffs, at_least_one=True).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]


def test_at_least_one_changes_only_empty_rows():
    rng = np.random.default_rng(8)
    probs, cutoffs = rng.random((200, 6)), rng.random(6) * 0.5 + 0.5
    plain = thresholds.apply(probs, cutoffs)
    filled = thresholds.apply(probs, cutoffs, at_least_one=True)
    empty = plain.sum(axis=1) == 0
    np.testing.assert_array_equal(filled[~empty], plain[~empty])
    assert (filled[empty].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(filled[empty].argmax(axis=1), (probs - cutoffs)[empty].argmax(axis=1))


def test_take_rows_equals_a_fresh_input_and_shares_the_test_sort():
    data = rule_input(9)
    data.test_sorted  # noqa: B018 -- computed before, so the subset must reuse it
    mask = np.arange(80) % 3 != 0
    subset = data.take_rows(mask)
    fresh = RuleInput(data.oof_probs[mask], data.oof_labels[mask], data.test_probs)
    assert subset.__dict__["test_sorted"] is data.test_sorted
    for name in RULES:
        np.testing.assert_array_equal(thresholds.fit_rule(name, subset), thresholds.fit_rule(name, fresh))
    rows = np.array([5, 5, 0, 79, 3])  # positions, repeats allowed
    resample = data.take_rows(rows)
    np.testing.assert_array_equal(resample.oof_probs, data.oof_probs[rows])
    np.testing.assert_array_equal(resample.oof_labels, data.oof_labels[rows])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: thresholds.RULES.check("mean"), "rule: unknown 'mean'; registered: f1, prior, global"),
        (lambda: RuleOptions(shrink=1.5), "'shrink' must be a number at least 0 and at most 1"),
        (lambda: RuleOptions(shrink=-0.1), "'shrink' must be a number at least 0 and at most 1"),
        (lambda: RuleOptions(global_below=-1), "'global_below' must be a number at least 0"),
        (lambda: RuleOptions(global_below=2.5), "global_below must be an integer"),
        (lambda: RuleOptions(at_least_one="yes"), "at_least_one must be true or false"),
        (lambda: RuleOptions(bag=-2), "'bag' must be a number at least 0"),
        (lambda: RuleOptions(bag=True), "bag must be an integer"),
        (lambda: RuleOptions(prior_rates=(0.1, 1.2)), "'prior_rates' must be a number at least 0 and at most 1"),
        (lambda: thresholds.fit_rule("prior", rule_input(), RuleOptions(prior_rates=(0.1,))), "has 1 rates"),
    ],
)
def test_bad_rule_config_is_a_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


AFTER_SETUP = """
import json
import numba
import numpy as np
from solution.data import duplicates
from solution.scoring import thresholds
duplicates.compile_kernels()
thresholds.compile_kernels()
kernels = {f"{module.__name__}.{name}": kernel for module in (duplicates, thresholds)
           for name, kernel in vars(module).items() if isinstance(kernel, numba.core.dispatcher.Dispatcher)}
ready = {name: list(kernel.signatures) for name, kernel in kernels.items()}
rng = np.random.default_rng(1)
probs = rng.random((60, 28)).astype(np.float32)
for labels in (probs > 0.8, (probs > 0.8).astype(np.int64)):
    for rule in thresholds.RULES:
        for options in (thresholds.RuleOptions(), thresholds.RuleOptions(shrink=0.5, global_below=3, bag=2)):
            thresholds.fit_rule(rule, thresholds.RuleInput(probs, labels, probs[:20]), options)
    thresholds.fitted_macro_f1(probs, labels)
    thresholds.fit(probs[:, :1], labels[:, :1])
duplicates.find_pairs(rng.integers(0, 2**63, (50, 8), dtype=np.uint64))
print(json.dumps({
    "top_level": sorted(name for name, signatures in ready.items() if signatures),
    "compiled_later": {name: [str(s) for s in kernel.signatures if s not in ready[name]]
                       for name, kernel in kernels.items() if list(kernel.signatures) != ready[name]},
}))
"""


def test_after_setup_compiles_the_numba_kernels_the_kit_compiles_none():
    """scripts/setup.sh runs both modules' compile_kernels at install; afterwards every rule, the fitted score
    and the pair search, on labels given as bool or int64, find each kernel they call ready (none compiles
    at a process's first fit: seconds per process)."""
    assert "duplicates.compile_kernels(); thresholds.compile_kernels()" in (ROOT / "scripts" / "setup.sh").read_text()
    run = subprocess.run([sys.executable, "-c", AFTER_SETUP], capture_output=True, text=True, check=True)
    found = json.loads(run.stdout)
    assert {"solution.data.duplicates._search", "solution.scoring.thresholds._count_above"} <= set(found["top_level"])
    assert found["compiled_later"] == {}, found
