"""Twins turned into score: ``make_submission --twins transfer`` and ``--average-test-twins`` at a tiny size."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from solution import duplicates, make_submission
from solution.artifacts.folds import DuplicatesMeta, Twins
from solution.core.fileio import read_json
from solution.core.tables import parse_target
from solution.data.layout import STAINS, open_dataset
from solution.ensemble import estimates, submission
from solution.ensemble.twins import Labelled, average_test_twins, nearest_twin_labels, oof_estimate
from solution.scoring.metrics import macro_f1
from solution.scoring.thresholds import RuleOptions


def copy_pixels(src, src_id: str, dst, dst_id: str, change=lambda im: im) -> None:
    """Overwrite (or write) ``dst_id``'s four stain files with a changed copy of ``src_id``'s."""
    dst.mkdir(parents=True, exist_ok=True)
    for stain in STAINS:
        img = cv2.imread(str(src / f"{src_id}_{stain}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(dst / f"{dst_id}_{stain}.png"), np.ascontiguousarray(change(img)))


def labels_of(path) -> dict[str, str]:
    return dict(pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False))


@pytest.fixture
def planted(trained, tiny_dataset, tmp_path):
    """The trained work folder with duplicates of a private copy of its dataset, in which test images 0-2 are
    flipped copies of training images 0-2, test image 4 a copy of test image 3, and an extra dataset holds
    copies of training images 5-8 (the last with other labels)."""
    ds = open_dataset(tiny_dataset)
    for k in range(3):
        copy_pixels(tiny_dataset / "train", ds.train_ids[k], tiny_dataset / "test", ds.test_ids[k], np.fliplr)
    copy_pixels(tiny_dataset / "test", ds.test_ids[3], tiny_dataset / "test", ds.test_ids[4], np.rot90)
    extra = tmp_path / "hpav18"
    rows = ["Id,Target"]
    for k in range(5, 9):
        copy_pixels(tiny_dataset / "train", ds.train_ids[k], extra / "train", f"x{k}", np.flipud)
        labels = np.flatnonzero(ds.train_labels[k]).tolist()
        rows.append(f"x{k},{' '.join(map(str, labels if k < 8 else [(labels[0] + 1) % 28]))}")
    (extra / "train.csv").write_text("\n".join(rows) + "\n")
    duplicates.main(["--data", str(tiny_dataset), "--extra", str(extra), "--size", "32"])
    return ds


def test_twins_file_gives_planted_test_images_their_sources_labels(planted, tiny_dataset, capsys):
    ds = planted
    make_submission.main(["--source", "tiny_effnet", "--data", str(tiny_dataset), "--twins", "transfer"])
    printed = capsys.readouterr().out
    plain, twins = labels_of("submissions/tiny_effnet.csv"), labels_of("submissions/tiny_effnet.twins.csv")
    assert list(plain) == list(twins) == ds.test_ids
    for k, test_id in enumerate(ds.test_ids):
        if k < 3:
            assert parse_target(twins[test_id], "") == np.flatnonzero(ds.train_labels[k]).tolist()
        else:
            assert twins[test_id] == plain[test_id]
    sidecar = read_json(Path("submissions/tiny_effnet.twins.json"))
    info = sidecar["twins"]
    changed = sum(plain[i] != twins[i] for i in ds.test_ids)
    assert info["test_images_with_a_labelled_twin"] == 3 and info["changed_images"] == changed
    assert info["file"] == "submissions/tiny_effnet.twins.csv"
    # the estimate: the extra copies of training images 5-8 are their twins on the training side of every fold
    assert info["oof_images_with_a_twin_in_another_fold_or_extra"] == 4 and info["oof_label_agreement"] == 0.75
    assert 0 <= info["oof_nested_macro_f1_plain"] <= 1 and 0 <= info["oof_nested_macro_f1_transferred"] <= 1
    assert read_json(Path("submissions/tiny_effnet.json"))["twins"] == info
    assert "twins submission: submissions/tiny_effnet.twins.csv (transfer: " in printed
    assert "4 images have a twin in another fold or the extra data, 75.0 % with the same labels" in printed

    make_submission.main(
        ["--source", "tiny_effnet", "--data", str(tiny_dataset), "--twins", "transfer", "--submit", "--dry-run"]
    )
    printed = capsys.readouterr().out
    assert "uploading the twins submission submissions/tiny_effnet.twins.csv (--twins transfer)" in printed
    assert "dry run: would submit submissions/tiny_effnet.twins.csv" in printed
    make_submission.main(["--source", "tiny_effnet", "--data", str(tiny_dataset), "--submit", "--dry-run"])
    assert "dry run: would submit submissions/tiny_effnet.csv " in capsys.readouterr().out  # the plain: the default


def test_oof_estimate_is_the_rule_replayed_on_the_nested_predictions(planted, tiny_dataset):
    ds = planted
    make_submission.main(
        ["--source", "tiny_effnet", "--rule", "f1", "--data", str(tiny_dataset), "--twins", "transfer"]
    )
    info = read_json(Path("submissions/tiny_effnet.twins.json"))["twins"]
    loaded, cands = submission.load_candidates(Path("oof"), Path("folds"), tiny_dataset)
    (cand,) = [c for c in cands if c.name == "tiny_effnet"]
    (variant,) = estimates.rule_variants(("f1",), RuleOptions(global_below=5, at_least_one=True))
    nested = estimates.nested_prediction(cand, loaded.labels, loaded.folds.fold, variant)
    transferred = nested.copy()
    extra = pd.read_csv(Path(read_json(Path("folds/duplicates.json"))["sources"]["hpav18"]) / "train.csv", dtype=str)
    for k, target in zip(range(5, 9), extra["Target"]):
        row = loaded.folds.ids.index(ds.train_ids[k])
        transferred[row] = 0
        transferred[row, parse_target(target, "")] = 1
    assert info["oof_nested_macro_f1_plain"] == pytest.approx(macro_f1(loaded.labels, nested))
    assert info["oof_nested_macro_f1_transferred"] == pytest.approx(macro_f1(loaded.labels, transferred))
    assert info["oof_nested_macro_f1_plain"] != info["oof_nested_macro_f1_transferred"]


def test_average_test_twins_gives_a_group_one_answer(planted, tiny_dataset):
    ds = planted
    make_submission.main(["--source", "tiny_effnet", "--data", str(tiny_dataset), "--average-test-twins"])
    plain = labels_of("submissions/tiny_effnet.csv")
    assert plain[ds.test_ids[3]] == plain[ds.test_ids[4]]
    assert read_json(Path("submissions/tiny_effnet.json"))["average_test_twins"] == {"groups": 1, "images": 2}


def test_average_test_twins_averages_each_groups_test_rows(tmp_path):
    pairs = tmp_path / "duplicates.csv"
    pd.DataFrame(
        {
            "Id": ["t0", "a", "t2", "t3", "t1"],
            "split": ["test", "train", "test", "test", "test"],
            "group": [0, 0, 1, 1, 1],
        }
    ).to_csv(tmp_path / "duplicates_groups.csv", index=False)
    test = np.array([[0.2, 0.4], [0.9, 0.1], [0.5, 0.5], [0.1, 0.3], [1.0, 0.0]])
    out, groups, images = average_test_twins(test, ["t0", "t1", "t2", "t3", "t4"], pairs)
    np.testing.assert_allclose(out[[1, 2, 3]], np.tile(test[[1, 2, 3]].mean(axis=0), (3, 1)))
    np.testing.assert_array_equal(out[[0, 4]], test[[0, 4]])  # t0's group holds one test image; t4 has none
    assert (groups, images) == (1, 3)


def test_nearest_twin_wins_and_ties_take_the_union():
    pairs = pd.DataFrame({"Id": ["a", "a", "a", "b"], "distance": [3, 1, 1, 0]})
    labels = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.uint8)
    nearest = nearest_twin_labels(pairs, labels)
    assert nearest["a"].tolist() == [0, 1, 1, 0] and nearest["b"].tolist() == [0, 0, 0, 1]
    assert labels[1].tolist() == [0, 1, 0, 0]  # the inputs are left alone


def test_oof_twins_count_only_on_the_training_side_of_the_fold():
    pairs = pd.DataFrame(
        {
            "id_a": ["a", "c", "e"],
            "split_a": ["train", "train", "train"],
            "id_b": ["b", "d", "x"],
            "split_b": ["train", "train", "hpav18"],
            "distance": [2, 0, 4],
        }
    )
    found = Twins(pairs, DuplicatesMeta({"train": "d", "test": "d", "hpav18": "h"}, 32, 8, 0.75))
    ids = ["a", "b", "c", "d", "e"]
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], np.uint8)
    labelled = Labelled({"train": dict(zip(ids, labels)), "hpav18": {"x": np.array([1, 1], np.uint8)}})
    fold = np.array([0, 1, 0, 0, 1])  # a and b in two folds; c and d in one (validated together): left out
    nested = np.array([[0, 1], [1, 0], [0, 1], [0, 1], [0, 1]], np.uint8)
    got = oof_estimate("transfer", found, labelled, ids, fold, labels, nested, Path("duplicates.csv"))
    transferred = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], np.uint8)  # a and b swap labels, e takes x's
    assert got == {
        "oof_images_with_a_twin_in_another_fold_or_extra": 3,
        "oof_label_agreement": pytest.approx(2 / 3),
        "oof_nested_macro_f1_plain": pytest.approx(macro_f1(labels, nested)),
        "oof_nested_macro_f1_transferred": pytest.approx(macro_f1(labels, transferred)),
    }


def test_twin_options_without_duplicates_say_what_to_run(trained):
    with pytest.raises(SystemExit, match=r"error: missing file: folds/duplicates.json \(made by `python -m solution"):
        make_submission.main(["--source", "tiny_effnet", "--twins", "transfer"])
    with pytest.raises(SystemExit, match=r"error: missing file: folds/duplicates_groups.csv \(made by `python -m"):
        make_submission.main(["--source", "tiny_effnet", "--average-test-twins"])
    assert not (trained / "submissions" / "tiny_effnet.csv").exists()  # nothing written before the error
