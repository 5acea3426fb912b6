import numpy as np
import pandas as pd
import pytest

from solution.artifacts.folds import check_balance, ensure_folds, make_folds, prevalence_table, read_folds
from solution.core.errors import ArtifactError, ConfigError


def test_folds_are_a_stratified_partition():
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 28)) < np.linspace(0.01, 0.1, 28)).astype(np.uint8)
    fold = make_folds(labels, n_folds=5, seed=1)
    assert set(fold) == {0, 1, 2, 3, 4}
    assert np.bincount(fold).min() >= 95

    def deviation(f):  # mean absolute gap between a fold's prevalence and the whole's
        return np.mean([np.abs(labels[f == k].mean(0) - labels.mean(0)) for k in range(5)])

    random_fold = rng.permutation(np.arange(500) % 5)
    assert deviation(fold) < 0.5 * deviation(random_fold)
    np.testing.assert_array_equal(fold, make_folds(labels, n_folds=5, seed=1))
    assert "fold4" in prevalence_table(labels, fold)


def test_too_few_images():
    with pytest.raises(ConfigError, match="cannot make 5 folds from 3 images"):
        make_folds(np.ones((3, 28)), 5)


def test_ensure_folds_writes_keeps_and_refuses(tiny_dataset, tmp_path, caplog):
    caplog.set_level("INFO", logger="solution")
    out = tmp_path / "folds"
    ensure_folds(tiny_dataset, out, 5, 42, force=False)
    folds = read_folds(out)
    df = pd.read_csv(out / "folds.csv")
    assert list(df.columns) == ["Id", "fold"] and len(df) == 40
    assert folds.meta.seed == 42 and folds.n_folds == 5
    ensure_folds(tiny_dataset, out, 5, 42, force=False)
    assert "keeping them" in caplog.text
    # the labels change: the old folds are refused with the command that remakes them
    lines = (tiny_dataset / "train.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",27"
    (tiny_dataset / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtifactError, match="made from other data .* --force"):
        ensure_folds(tiny_dataset, out, 5, 42, force=False)
    ensure_folds(tiny_dataset, out, 5, 42, force=True)
    assert read_folds(out).labels_hash != folds.labels_hash


def test_folds_hash_tracks_the_assignment(tiny_dataset, tmp_path):
    ensure_folds(tiny_dataset, tmp_path / "a", 5, 1, force=False)
    ensure_folds(tiny_dataset, tmp_path / "b", 5, 2, force=False)
    a, b = read_folds(tmp_path / "a"), read_folds(tmp_path / "b")
    assert a.labels_hash == b.labels_hash and a.hash != b.hash
    df = pd.read_csv(tmp_path / "a" / "folds.csv")
    df.loc[0, "fold"] = (df.loc[0, "fold"] + 1) % 5
    df.to_csv(tmp_path / "a" / "folds.csv", index=False)
    with pytest.raises(ArtifactError, match="folds.csv does not match .*folds.json"):
        read_folds(tmp_path / "a")


def test_missing_folds_say_how_to_make_them(tmp_path):
    with pytest.raises(ArtifactError, match="python -m solution.folds --data DIR"):
        read_folds(tmp_path)


def test_unbalanced_folds_are_refused_naming_the_largest_group(caplog):
    caplog.set_level("INFO", logger="solution")
    ids = [f"img{i}" for i in range(1000)]
    labels = (np.random.default_rng(0).random((1000, 28)) < 0.1).astype(np.uint8)
    chained = np.full(1000, -1)
    chained[:100] = 0  # pairs chained into one group of 100 images: its fold holds 100 more than the others
    groups = chained.copy()
    groups[:100] = np.repeat(np.arange(50), 2)  # the same images as pairs
    check_balance(make_folds(labels, 5, 0, groups), groups, ids, 0.10)
    assert "fold sizes: " in caplog.text
    with pytest.raises(
        ConfigError,
        match=r"fold sizes .* % above the smallest, more than --max-fold-imbalance 0.1; "
        r"the largest duplicate group holds 100 training images \(group 0, e.g. img0\)",
    ):
        check_balance(make_folds(labels, 5, 0, chained), chained, ids, 0.10)
    check_balance(make_folds(labels, 5, 0, chained), chained, ids, 1.0)
    check_balance(np.array([0] * 20 + [1] * 8), None, ids[:28], 0.10)  # no groups: the splitter's spread, a warning
    assert "without duplicate groups (few images?)" in caplog.text
    check_balance(np.array([0] * 18 + [1] * 8), None, ids[:26], 0.10)  # 10 images apart: what small sets need
