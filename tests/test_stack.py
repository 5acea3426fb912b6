import numpy as np
import pytest

from solution.stacking import features, fit_predict_class, stack


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    pos, neg = scores[truth == 1], scores[truth == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_informative_feature_is_used():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 4)) < 0.3).astype(np.uint8)
    x = np.clip(labels * 0.6 + rng.random((300, 4)) * 0.5, 0, 1)  # one "experiment": noisy truth
    fold = np.arange(300) % 5
    oof, test = stack(x, labels, fold, x[:50], n_jobs=1)
    assert oof.shape == (300, 4) and test.shape == (50, 4)
    assert auc(oof[:, 3], labels[:, 3]) > 0.9


def test_oof_predictions_are_honest():
    """On pure noise, a stacker that saw its own OOF rows would score far above chance; ours must not."""
    rng = np.random.default_rng(1)
    labels = (rng.random((400, 8)) < 0.4).astype(np.uint8)
    x = rng.random((400, 16))
    oof, _ = stack(x, labels, np.arange(400) % 5, x[:10], n_jobs=1)
    assert np.mean([auc(oof[:, c], labels[:, c]) for c in range(8)]) == pytest.approx(0.5, abs=0.05)


def test_class_without_positives_predicts_constant():
    x = np.random.default_rng(2).random((20, 4))
    out = fit_predict_class(x, np.zeros(20, dtype=np.uint8), [x[:3]], seed=0, n_jobs=1)
    np.testing.assert_array_equal(out[0], np.zeros(3))


def test_features_are_experiments_then_their_mean():
    a, b = np.full((3, 28), 0.2), np.full((3, 28), 0.6)
    x = features([a, b])
    assert x.shape == (3, 84)
    np.testing.assert_allclose(x[:, 56:], 0.4)
