import os

import numpy as np
import pandas as pd
import pytest
from conftest import folds_of, manifest_of

from solution.artifacts import oof as oof_module
from solution.artifacts.oof import probs_frame, read_predictions, write_predictions
from solution.core.errors import ArtifactError, LockedError
from solution.core.fileio import atomic_path, atomic_write_text
from solution.core.ids import align, positions


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def make_folds(ids, hash_="abc"):
    return folds_of(ids, hash_)


def write_set(path, oof_ids, test_ids, folds_hash="abc"):
    rng = np.random.default_rng(0)
    oof, test = rng.random((len(oof_ids), 28)), rng.random((len(test_ids), 28))
    write_predictions(path, probs_frame(oof_ids, oof), probs_frame(test_ids, test), manifest_of(path.name, folds_hash))
    return oof.astype(np.float32), test.astype(np.float32)


def test_read_predictions_round_trip(tmp_path):
    oof, test = write_set(tmp_path / "exp", ["a", "b", "c"], ["t1", "t2"])
    preds = read_predictions(tmp_path / "exp", make_folds(["c", "b", "a"]), ["t2", "t1"])
    assert (
        preds.name == "exp"
        and preds.manifest.folds_hash == "abc"
        and set(preds.manifest.files) == {"oof.parquet", "test.parquet"}
    )
    assert preds.oof_probs.dtype == np.float32 and preds.oof["Id"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(preds.oof_probs, oof)
    np.testing.assert_array_equal(preds.test_probs, test)


def test_mismatched_folds_hash_names_both(tmp_path):
    write_set(tmp_path / "exp", ["a", "b"], ["t"], folds_hash="old")
    with pytest.raises(ArtifactError, match="made with folds old, but folds/folds.json is abc"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b"]))


def test_mismatched_ids_name_both_sides(tmp_path):
    write_set(tmp_path / "exp", ["a", "b", "x"], ["t"])
    with pytest.raises(
        ArtifactError,
        match=r"1 Id\(s\) of folds/folds.csv missing from .*oof.parquet \(e.g. c\); "
        r"1 Id\(s\) in .*oof.parquet not in folds/folds.csv \(e.g. x\)",
    ):
        read_predictions(tmp_path / "exp", make_folds(["a", "b", "c"]))
    with pytest.raises(ArtifactError, match="the test set missing from"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b", "x"]), ["t", "u"])


def test_a_second_writer_of_a_set_stops_naming_the_first(tmp_path, monkeypatch):
    real, inner = oof_module.atomic_write_parquet, []

    def first_writing(path, frame):
        if not inner:  # a second writer (another stack run) arrives while the first writes
            with pytest.raises(LockedError, match=f"prediction set .*exp is in use by process {os.getpid()}"):
                inner.append(write_set(tmp_path / "exp", ["a", "b"], ["t"]))
        return real(path, frame)

    monkeypatch.setattr(oof_module, "atomic_write_parquet", first_writing)
    oof, _ = write_set(tmp_path / "exp", ["a", "b"], ["t"])
    assert not inner
    np.testing.assert_array_equal(read_predictions(tmp_path / "exp", make_folds(["a", "b"])).oof_probs, oof)


def test_a_file_renamed_over_by_another_writer_makes_the_set_refused(tmp_path, monkeypatch):
    real, other = oof_module.atomic_write_parquet, probs_frame(["a", "b"], np.zeros((2, 28)))

    def and_another_writer(path, frame):
        digest = real(path, frame)
        if path.name == "oof.parquet":  # a writer without the lock renames its file in between
            real(path, other)
        return digest

    monkeypatch.setattr(oof_module, "atomic_write_parquet", and_another_writer)
    write_set(tmp_path / "exp", ["a", "b"], ["t"])
    with pytest.raises(ArtifactError, match="oof.parquet is not the file .*manifest.json was written with"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b"]))


def test_bad_probabilities_refused(tmp_path):
    bad = probs_frame(["a", "b"], np.full((2, 28), 1.5))
    write_predictions(tmp_path / "exp", bad, probs_frame(["t"], np.zeros((1, 28))), manifest_of("exp"))
    with pytest.raises(ArtifactError, match="within \\[0, 1\\]"):
        read_predictions(tmp_path / "exp", make_folds(["a", "b"]))


def test_positions_and_align_by_id():
    np.testing.assert_array_equal(positions(["a", "b", "c"], ["c", "a"], "x.csv"), [2, 0])
    df = pd.DataFrame({"Id": ["a", "b", "c"], "v": [1, 2, 3]})
    assert align(df, ["b", "c", "a"], "x.csv")["v"].tolist() == [2, 3, 1]
    with pytest.raises(ArtifactError, match="x.csv: no row for Id 'z' \\(1 Id\\(s\\) missing\\)"):
        positions(["a"], ["a", "z"], "x.csv")
