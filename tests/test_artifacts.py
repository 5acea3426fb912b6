import numpy as np
import pytest

from solution.artifacts import (
    ArtifactError,
    Folds,
    atomic_path,
    atomic_write_text,
    probs_frame,
    read_predictions,
    write_predictions,
)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def make_folds(ids, hash_="abc"):
    return Folds(ids=ids, fold=np.arange(len(ids)) % 2, meta={"n_folds": 2, "labels_hash": "data", "folds_hash": hash_, "data_dir": ".", "seed": 0})


def write_set(path, oof_ids, test_ids, folds_hash="abc"):
    rng = np.random.default_rng(0)
    write_predictions(
        path,
        probs_frame(oof_ids, rng.random((len(oof_ids), 28))),
        probs_frame(test_ids, rng.random((len(test_ids), 28))),
        {"folds_hash": folds_hash},
    )


def test_read_predictions_round_trip(tmp_path):
    write_set(tmp_path / "exp", ["a", "b", "c"], ["t1", "t2"])
    preds = read_predictions(tmp_path / "exp", make_folds(["c", "b", "a"]), ["t2", "t1"])
    assert preds.oof_probs.shape == (3, 28) and preds.oof_probs.dtype == np.float32
    assert preds.name == "exp"


def test_mismatched_folds_hash_names_both(tmp_path):
    write_set(tmp_path / "exp", ["a", "b"], ["t"], folds_hash="old")
    with pytest.raises(ArtifactError, match="made with folds old, but folds/folds.json is abc"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b"]))


def test_mismatched_ids_name_both_sides(tmp_path):
    write_set(tmp_path / "exp", ["a", "b", "x"], ["t"])
    with pytest.raises(ArtifactError, match=r"1 Id\(s\) of folds/folds.csv missing from .*oof.parquet \(e.g. c\); 1 Id\(s\) in .*oof.parquet not in folds/folds.csv \(e.g. x\)"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b", "c"]))
    with pytest.raises(ArtifactError, match="the test set missing from"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b", "x"]), ["t", "u"])


def test_bad_probabilities_refused(tmp_path):
    write_set(tmp_path / "exp", ["a", "b"], ["t"])
    df = probs_frame(["a", "b"], np.full((2, 28), 1.5))
    df.to_parquet(tmp_path / "exp" / "oof.parquet", index=False)
    with pytest.raises(ArtifactError, match="within \\[0, 1\\]"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b"]))
