import numpy as np
import pytest
from sklearn.metrics import f1_score

from solution.scoring.metrics import f1_per_class, macro_f1


@pytest.mark.parametrize(
    "y_true, y_pred, expected",
    [
        # class 0: tp=1 fp=1 fn=0 -> 2/3; class 1: tp=1 fp=0 fn=1 -> 2/3
        ([[1, 1], [0, 1]], [[1, 1], [1, 0]], [2 / 3, 2 / 3]),
        # class 0 perfect; class 1 never true, never predicted -> 0 (counted in the mean)
        ([[1, 0], [0, 0]], [[1, 0], [0, 0]], [1.0, 0.0]),
        # class 1 never true but predicted once -> 0
        ([[1, 0], [1, 0]], [[1, 1], [0, 0]], [2 / 3, 0.0]),
    ],
)
def test_f1_per_class_by_hand(y_true, y_pred, expected):
    np.testing.assert_allclose(f1_per_class(np.array(y_true), np.array(y_pred)), expected)
    assert macro_f1(np.array(y_true), np.array(y_pred)) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((60, 28)) < rng.random(28) * 0.3).astype(int)
    y_pred = (rng.random((60, 28)) < 0.15).astype(int)
    expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred) == pytest.approx(expected)


def test_macro_f1_is_not_sample_averaged():
    # Sample-averaged F1 would be 1.0 for row 0 and 0 for row 1 -> 0.5; macro over classes differs.
    y_true = np.array([[1, 0, 0], [0, 1, 1]])
    y_pred = np.array([[1, 0, 0], [0, 0, 0]])
    assert macro_f1(y_true, y_pred) == pytest.approx(1 / 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        macro_f1(np.zeros((3, 28)), np.zeros((4, 28)))
