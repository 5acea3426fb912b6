from collections import Counter
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from solution.core.errors import ConfigError
from solution.core.registry import Registry
from solution.ensemble import blend, estimates
from solution.ensemble.blend import Candidate
from solution.scoring import thresholds
from solution.scoring.metrics import macro_f1
from solution.scoring.thresholds import RuleOptions

RULES = tuple(thresholds.RULES)


def noise(seed: int, n: int = 400, c: int = 8, e: int = 2):
    """Labels that are pure noise, experiments that know nothing about them."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.02, 0.1, c)
    y = (rng.random((n, c)) < prevalence).astype(int)
    oofs = [rng.random((n, c)) for _ in range(e)]
    tests = [rng.random((n // 2, c)) for _ in range(e)]
    return y, oofs, tests, np.arange(n) % 5


def test_estimates_by_hand():
    # fold 0: p 0.9 (pos), 0.6 (neg); fold 1: p 0.7 (neg), 0.4 (pos).
    # Fitted on fold 1, the best is to predict both (F1 2/3): applied to fold 0, F1 2/3.
    # Fitted on fold 0, cut at 0.75 (F1 1): fold 1 gets no prediction, F1 0. Mean 1/3, std 1/3.
    # Pooled: predictions 1, 1, 0, 0 against 1, 0, 0, 1: F1 2*1/(2+2) = 0.5.
    # In-sample on all four: the top one alone, 2*1/(1+2) = 2/3 (as good as all four; the smaller set wins).
    cand = Candidate("x", np.array([[0.9], [0.6], [0.7], [0.4]]), np.array([[0.5]]))
    table = estimates.estimate_table([cand], np.array([[1], [0], [0], [1]]), np.array([0, 0, 1, 1]), ("f1",))
    row = table.iloc[0]
    assert (row["candidate"], row["rule"]) == ("x", "f1")
    assert row["in_sample_macro_f1"] == pytest.approx(2 / 3)
    assert row["nested_macro_f1"] == pytest.approx(1 / 3)
    assert row["nested_pooled_macro_f1"] == pytest.approx(0.5)
    assert row["nested_fold_std"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(2))
def test_nested_is_honest_on_noise(seed):
    y, oofs, tests, fold = noise(seed)
    cands = blend.candidates(["a", "b"], oofs, tests, y, iterations=3)
    table = estimates.estimate_table(cands, y, fold, RULES).set_index(["candidate", "rule"])
    prevalence = y.mean(axis=0)
    best_blind = float(np.mean(2 * prevalence / (1 + prevalence)))  # predicting every label: the best blind guess
    # every nested figure is what guessing scores: between guessing at each class's rate (F1 = its
    # prevalence, in expectation) and predicting everything; the in-sample f1 search fits the noise
    assert (table["nested_macro_f1"] < best_blind + 0.02).all()
    assert (table["nested_macro_f1"] > prevalence.mean() / 2).all()
    f1 = table.xs("f1", level="rule")
    assert (f1["in_sample_macro_f1"] > f1["nested_macro_f1"] + 0.025).all()
    assert (f1["in_sample_macro_f1"] > best_blind + 0.01).all()


def test_no_row_is_scored_by_a_fit_that_saw_it(monkeypatch):
    y, oofs, tests, fold = noise(2, n=100, c=4)
    n = len(y)
    for oof in oofs:
        oof[:, 0] = (np.arange(n) + 0.5) / n  # column 0 names the row, in every experiment and every blend of them
    cands = blend.candidates(["a", "b"], oofs, tests, y, iterations=2)
    calls: list[tuple[str, frozenset[int], object]] = []
    refit_masks: list[np.ndarray] = []

    def ids(probs: np.ndarray) -> frozenset[int]:
        return frozenset(np.floor(np.asarray(probs)[:, 0] * n - 1e-6).astype(int).tolist())  # ranks: (row + 1) / n

    real_fit, real_apply = thresholds.fit_rule, thresholds.apply

    def spy_fit(rule, data, options):
        calls.append(("fit", ids(data.oof_probs), data.test_probs))
        return real_fit(rule, data, options)

    def spy_apply(probs, cutoffs, at_least_one=False):
        calls.append(("apply", ids(probs), None))
        return real_apply(probs, cutoffs, at_least_one)

    hill = cands[-1]
    real_refit = hill.refit

    def spy_refit(mask):
        refit_masks.append(mask.copy())
        return real_refit(mask)

    cands[-1] = Candidate(hill.name, hill.oof, hill.test, hill.weights, spy_refit)
    monkeypatch.setattr(thresholds, "fit_rule", spy_fit)
    monkeypatch.setattr(thresholds, "apply", spy_apply)
    estimates.estimate_table(cands, y, fold, RULES)

    everything = frozenset(range(n))
    scored = 0
    for (kind, fitted, _), (next_kind, applied, _) in pairwise(calls):
        if kind == "fit" and next_kind == "apply" and fitted != everything:
            assert not fitted & applied
            assert fitted | applied == everything
            scored += len(applied)
    assert scored == n * len(cands) * len(RULES)  # every row scored once per candidate and rule, all held out
    assert [m.tolist() for m in refit_masks] == [(fold != k).tolist() for k in range(5)]
    tests_seen = Counter(id(test) for kind, _, test in calls if kind == "fit")
    for cand in cands[:-1]:  # in-sample and every fold see the candidate's own test probabilities
        assert tests_seen[id(cand.test)] == 6 * len(RULES)


def test_prior_rates_come_from_the_training_folds_only(monkeypatch):
    y, oofs, tests, fold = noise(3, n=100, c=3)
    seen = []
    real = thresholds.RULES["prior"]

    def spy(data, options):
        seen.append(data.oof_labels.shape[0])
        return real(data, options)

    monkeypatch.setattr(thresholds, "RULES", Registry("rule", {**thresholds.RULES, "prior": spy}))
    estimates.estimate_table([Candidate("a", oofs[0], tests[0])], y, fold, ("prior",))
    assert seen == [100] + [80] * 5


def test_pick_best_breaks_draws_by_pooled_then_order():
    table = pd.DataFrame(
        {
            "candidate": ["a", "b", "c", "d"],
            "rule": ["f1", "f1", "prior", "global"],
            "in_sample_macro_f1": [0.9, 0.8, 0.7, 0.95],
            "nested_macro_f1": [0.5, 0.6, 0.6, 0.6],
            "nested_pooled_macro_f1": [0.7, 0.55, 0.58, 0.58],
            "nested_fold_std": [0.01] * 4,
        }
    )
    assert estimates.pick_best(table)["candidate"] == "c"
    assert estimates.pick_best(table.iloc[::-1])["candidate"] == "d"


def test_bad_inputs():
    y, oofs, tests, fold = noise(4, n=50, c=2)
    cand = [Candidate("a", oofs[0], tests[0])]
    with pytest.raises(ConfigError, match="rule: unknown .*; registered: f1, prior, global"):
        estimates.estimate_table(cand, y, fold, ("f1", "median"))
    with pytest.raises(ValueError, match="one integer per OOF row"):
        estimates.estimate_table(cand, y, fold[:-1])
    with pytest.raises(ValueError, match="at least two folds"):
        estimates.estimate_table(cand, y, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="no estimates"):
        estimates.pick_best(pd.DataFrame(columns=list(estimates.COLUMNS)))


def test_options_reach_every_fit_and_prediction():
    y, oofs, tests, fold = noise(5, n=100, c=3)
    options = RuleOptions(shrink=0.5, at_least_one=True)
    cand = Candidate("a", oofs[0], tests[0])
    row = estimates.estimate_table([cand], y, fold, ("f1",), options).iloc[0]
    cutoffs = thresholds.fit_rule("f1", thresholds.RuleInput(oofs[0], y, tests[0]), options)
    assert row["in_sample_macro_f1"] == pytest.approx(
        macro_f1(y, thresholds.apply(oofs[0], cutoffs, at_least_one=True))
    )
    scores = []
    for k in range(5):
        held = fold == k
        cutoffs = thresholds.fit_rule("f1", thresholds.RuleInput(oofs[0][~held], y[~held], tests[0]), options)
        scores.append(macro_f1(y[held], thresholds.apply(oofs[0][held], cutoffs, at_least_one=True)))
    assert row["nested_macro_f1"] == pytest.approx(np.mean(scores))


def test_bagged_and_given_rates_variants_sit_beside_the_plain_rules():
    y, oofs, tests, fold = noise(6, n=100, c=3)
    cand = Candidate("a", oofs[0], tests[0])
    rates = (0.5, 0.0, 1.0)
    options = RuleOptions(global_below=2, bag=3, prior_rates=rates)
    table = estimates.estimate_table([cand], y, fold, ("f1", "prior"), options)
    assert table["rule"].tolist() == ["f1", "f1+bag3", "prior", "prior+bag3", "prior+rates"]
    plain = estimates.estimate_table([cand], y, fold, ("f1", "prior"), RuleOptions(global_below=2))
    assert table.set_index("rule").loc[["f1", "prior"]].equals(plain.set_index("rule"))
    variants = {v.name: v for v in estimates.rule_variants(("f1", "prior"), options)}
    assert variants["f1+bag3"].options == RuleOptions(global_below=2, bag=3)
    assert variants["prior+rates"].options == RuleOptions(global_below=2, prior_rates=rates)
    for name in ("f1+bag3", "prior+rates"):  # each scored by its own fits, on the other folds only
        v = variants[name]
        pred = estimates.nested_prediction(cand, y, fold, v)
        scores = [macro_f1(y[fold == k], pred[fold == k]) for k in range(5)]
        row = table.set_index("rule").loc[name]
        assert row["nested_macro_f1"] == pytest.approx(np.mean(scores))
        assert row["nested_pooled_macro_f1"] == pytest.approx(macro_f1(y, pred))
        held = fold == 0
        cutoffs = thresholds.fit_rule(v.rule, thresholds.RuleInput(oofs[0][~held], y[~held], tests[0]), v.options)
        np.testing.assert_array_equal(pred[held], thresholds.apply(oofs[0][held], cutoffs))
    rated = estimates.nested_prediction(cand, y, fold, variants["prior+rates"])
    assert rated[:, 1].sum() < 10 < 80 < rated[:, 2].sum()  # rates 0 and 1 on test: nearly nothing, nearly all
    assert 10 < rated[:, 0].sum() < 90
