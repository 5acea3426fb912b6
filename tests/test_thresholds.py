import numpy as np
import pytest

from solution import thresholds
from solution.metrics import f1_per_class, macro_f1


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
