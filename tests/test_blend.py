import numpy as np
import pytest

from solution.core.errors import ConfigError
from solution.ensemble import blend
from solution.scoring.metrics import f1_per_class


def experiments(seed: int = 0, e: int = 3, n: int = 60, m: int = 20, c: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(int)
    oofs = [np.round(np.clip(rng.random() * 0.5 * y + rng.random((n, c)) * 0.7, 0, 1), 2) for _ in range(e)]
    tests = [np.round(rng.random((m, c)), 2) for _ in range(e)]
    return oofs, tests, y


def brute_fitted_macro_f1(p: np.ndarray, y: np.ndarray) -> float:
    """Mean over classes of the best F1 over every distinct cut-off, by direct evaluation."""
    best = []
    for c in range(p.shape[1]):
        cuts = np.concatenate([np.unique(p[:, c]), [-1.0]])
        best.append(max(f1_per_class(y[:, [c]], p[:, [c]] > t)[0] for t in cuts))
    return float(np.mean(best))


def brute_hill_climb(oofs: list[np.ndarray], y: np.ndarray, iterations: int) -> list[int]:
    picks: list[int] = []
    for _ in range(iterations):
        scores = [brute_fitted_macro_f1(np.mean([oofs[i] for i in picks + [e]], axis=0), y) for e in range(len(oofs))]
        picks.append(int(np.argmax(scores)))
    return picks


def test_candidates_are_singles_then_blends():
    oofs, tests, y = experiments()
    cands = blend.candidates(["a", "b", "c"], oofs, tests, y, iterations=3)
    assert [c.name for c in cands] == ["a", "b", "c", "mean", "rank_mean", "hill_climb"]
    np.testing.assert_array_equal(cands[1].oof, oofs[1])
    np.testing.assert_array_equal(cands[1].weights, [0, 1, 0])
    assert [c.refit is None for c in cands] == [True] * 5 + [False]
    assert [c.name for c in blend.candidates(["a"], oofs[:1], tests[:1], y)] == ["a"]


def test_mean_blend():
    oofs, tests, y = experiments(1)
    mean = blend.candidates(["a", "b", "c"], oofs, tests, y, iterations=1)[3]
    np.testing.assert_allclose(mean.oof, np.mean(oofs, axis=0))
    np.testing.assert_allclose(mean.test, np.mean(tests, axis=0))
    np.testing.assert_allclose(mean.weights, [1 / 3] * 3)


def test_rank_mean_by_hand():
    # OOF empirical CDF: 0.1 -> 1/4, 0.2 -> 1/2, 0.3 -> 3/4, 0.4 -> 1; test values interpolate between
    # OOF neighbours and clamp outside their range. Second experiment: ties share a rank, 0.1 -> 2/4.
    oof = np.array([[[0.1], [0.2], [0.3], [0.4]], [[0.1], [0.1], [0.5], [0.9]]])
    test = np.array([[[0.25], [0.05], [0.9]], [[0.1], [0.7], [1.0]]])
    cand = blend.rank_mean(oof, test)
    np.testing.assert_allclose(cand.oof[:, 0], [(0.25 + 0.5) / 2, (0.5 + 0.5) / 2, (0.75 + 0.75) / 2, (1 + 1) / 2])
    np.testing.assert_allclose(cand.test[:, 0], [(0.625 + 0.5) / 2, (0.25 + 0.875) / 2, (1 + 1) / 2])
    assert cand.weights is None


def test_rank_mean_ignores_each_experiments_scale():
    oofs, _, _ = experiments(2, e=2)
    tests = [oof[::-3] for oof in oofs]  # on the OOF values themselves, where interpolation is exact
    stack = np.stack(oofs), np.stack(tests)
    squashed = np.stack([oofs[0], oofs[1] ** 3]), np.stack([tests[0], tests[1] ** 3])
    np.testing.assert_allclose(blend.rank_mean(*squashed).oof, blend.rank_mean(*stack).oof)
    np.testing.assert_allclose(blend.rank_mean(*squashed).test, blend.rank_mean(*stack).test)


@pytest.mark.parametrize("seed", range(3))
def test_hill_climb_matches_brute_force(seed):
    oofs, _, y = experiments(seed, e=3, n=40)
    assert blend.hill_climb(np.stack(oofs), y, 4) == brute_hill_climb(oofs, y, 4)


def test_hill_climb_picks_the_perfect_experiment_and_ties_go_first():
    oofs, tests, y = experiments(3)
    perfect = 0.2 + 0.6 * y
    assert blend.hill_climb(np.stack([oofs[0], perfect, perfect]), y, 3)[0] == 1
    assert blend.hill_climb(np.stack([perfect, perfect]), y, 3) == [0, 0, 0]
    wrong = 0.8 - 0.6 * y  # (perfect + wrong) / 2 is constant: never worth adding early; later draws go to perfect
    cand = blend.hill_climb_candidate(np.stack([perfect, wrong]), np.stack(tests[:2]), y, 4)
    np.testing.assert_array_equal(cand.weights, [1, 0])
    np.testing.assert_allclose(cand.oof, perfect)
    np.testing.assert_allclose(cand.test, tests[0])


def test_hill_climb_refit_sees_only_its_rows():
    oofs, tests, y = experiments(4, n=80)
    rows = np.arange(80) < 50
    stack, test_stack = np.stack(oofs), np.stack(tests)
    refit = blend.candidates(["a", "b", "c"], oofs, tests, y, iterations=4)[-1].refit(rows)
    # scrambling everything outside the rows changes nothing that was fitted
    rng = np.random.default_rng(0)
    scrambled, y_scrambled = stack.copy(), y.copy()
    scrambled[:, ~rows] = rng.random(scrambled[:, ~rows].shape)
    y_scrambled[~rows] = 1 - y_scrambled[~rows]
    again = blend.hill_climb_candidate(scrambled, test_stack, y_scrambled, 4, rows)
    np.testing.assert_array_equal(refit.weights, again.weights)
    np.testing.assert_array_equal(
        refit.weights, blend.hill_climb_candidate(stack[:, rows], test_stack, y[rows], 4).weights
    )
    np.testing.assert_allclose(refit.oof, np.tensordot(refit.weights, stack, 1))  # applied to every row


@pytest.mark.parametrize(
    "names, n_oofs, match",
    [
        (["a", "a"], 2, "unique"),
        (["a", "mean"], 2, "not one of mean, rank_mean, hill_climb"),
        (["a", "b"], 1, "one OOF and one test matrix per experiment"),
    ],
)
def test_bad_experiment_lists(names, n_oofs, match):
    oofs, tests, y = experiments(5, e=2)
    with pytest.raises(ValueError, match=match):
        blend.candidates(names, oofs[:n_oofs], tests, y)


def test_bad_shapes_and_iterations():
    oofs, tests, y = experiments(6, e=2)
    with pytest.raises(ValueError, match="one shape"):
        blend.candidates(["a", "b"], [oofs[0], oofs[1][:10]], tests, y)
    with pytest.raises(ValueError, match="disagree"):
        blend.candidates(["a", "b"], oofs, tests, y[:10])
    with pytest.raises(ConfigError, match="at least 1 iteration"):
        blend.candidates(["a", "b"], oofs, tests, y, iterations=0)
