import lightgbm as lgb
import numpy as np
import pytest

from solution import stack as stack_command
from solution.core.errors import ConfigError
from solution.ensemble import stacking
from solution.ensemble.stacking import all_features, class_features, stack


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    pos, neg = scores[truth == 1], scores[truth == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def noisy_truth(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(np.uint8)
    return labels, np.clip(labels * 0.6 + rng.random((2, n, c)) * 0.5, 0, 1)  # two "experiments": noisy truth


@pytest.mark.parametrize("features", sorted(stacking.FEATURE_SETS))
def test_informative_features_are_used(features):
    labels, x = noisy_truth(400, 4, 0)
    out = stack(x, labels, np.arange(400) % 5, x[:, :50], features=features)
    assert out.oof.shape == (400, 4) and out.test.shape == (50, 4) and out.fallback == []
    assert auc(out.oof[:, 3], labels[:, 3]) > 0.9


def test_oof_predictions_are_honest():
    """On pure noise, a stacker that saw its own OOF rows would score far above chance; ours must not."""
    rng = np.random.default_rng(1)
    labels = (rng.random((600, 8)) < 0.4).astype(np.uint8)
    x = rng.random((2, 600, 8))
    out = stack(x, labels, np.arange(600) % 5, x[:, :10])
    assert np.mean([auc(out.oof[:, c], labels[:, c]) for c in range(8)]) == pytest.approx(0.5, abs=0.05)


def test_rare_class_keeps_the_mean_and_is_reported():
    labels, x = noisy_truth(200, 3, 2)
    labels[:, 1] = 0
    labels[:3, 1] = 1
    out = stack(x, labels, np.arange(200) % 5, x[:, :7], mean_below=10)
    assert out.fallback == [1]
    np.testing.assert_allclose(out.oof[:, 1], x[:, :, 1].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out.test[:, 1], x[:, :7, 1].mean(0), rtol=1e-6)


def test_deterministic():
    labels, x = noisy_truth(300, 3, 3)
    a, b = (stack(x, labels, np.arange(300) % 5, x[:, :9], seed=4) for _ in range(2))
    np.testing.assert_array_equal(a.oof, b.oof)
    np.testing.assert_array_equal(a.test, b.test)


def test_features_by_hand():
    a, b = np.full((3, 28), 0.2), np.full((3, 28), 0.6)
    a[:, 5] = 0.9
    x = class_features(np.stack([a, b]), 5)
    np.testing.assert_allclose(x[0], [0.9, 0.6, 0.75, 0.9, 1.0])  # both, mean, max, labels of the mean > 0.5
    assert all_features(np.stack([a, b]), 0).shape == (3, 28 * 2 + 28 * 2 + 1)


def test_each_matrix_is_binned_once(monkeypatch):
    """The fold and early-stopping sets are subsets of one Dataset per class (one in all for 'all')."""
    binned = []
    original = lgb.Dataset.__init__

    def counting(self, data, *args, **kwargs):
        binned.append(data is not None)  # a subset is made without data, from its parent's bins
        original(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Dataset, "__init__", counting)
    labels, x = noisy_truth(200, 3, 5)
    stack(x, labels, np.arange(200) % 5, x[:, :4], features="all")
    assert sum(binned) == 1 and len(binned) > 1
    binned.clear()
    stack(x, labels, np.arange(200) % 5, x[:, :4], features="class")
    assert sum(binned) == 3


def test_unknown_feature_set():
    labels, x = noisy_truth(50, 2, 6)
    with pytest.raises(ConfigError, match="registered: class, all"):
        stack(x, labels, np.arange(50) % 5, x, features="nope")


def test_the_stack_is_not_stacked_over_itself(trained):
    stack_command.main([])
    before = (trained / "oof" / "stack" / "manifest.json").read_bytes()
    with pytest.raises(SystemExit, match=r"error: --experiments: 'stack' is the stacker's own output"):
        stack_command.main(["--experiments", "tiny_effnet", "stack"])
    assert (trained / "oof" / "stack" / "manifest.json").read_bytes() == before


def test_the_early_stopping_rows_are_never_empty_nor_all():
    for n in range(2, 41):
        rows = np.arange(100, 100 + n)
        for seed in range(20):
            fit, stop = stacking._early_stop_rows(rows, seed)
            assert len(stop) == max(1, round(0.1 * n)) and len(fit) == n - len(stop)
            np.testing.assert_array_equal(np.sort(np.concatenate([fit, stop])), rows)


def test_a_seed_that_once_drew_no_early_stopping_row_stacks(trained):
    stack_command.main(["--seed", "6"])  # 32 training rows per fold: 0.9 ** 32 = 3 % of draws held none
    assert (trained / "oof" / "stack" / "manifest.json").is_file()
