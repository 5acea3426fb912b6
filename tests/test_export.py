"""Offline inference: ``python -m solution.export`` bundles a submission, and ``python -m solution.predict --bundle``
writes it again, byte for byte, in a folder holding only the bundle and the data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solution import export, make_submission, predict, stack
from solution.artifacts.bundle import BundleManifest
from solution.core.fileio import file_hash
from solution.ensemble.offline import Recipe

# Each pick exported: a single experiment, a blend fitted on the OOF labels, the stack.
PICKS = {"single": "tiny_effnet", "blend": "hill_climb", "stack": "stack"}


@pytest.fixture(scope="module")
def offline(trained_master, tiny_dataset_master, tmp_path_factory):
    """The trained folder with a submission and a bundle per pick, and a fresh folder (bundles, a copy of the data,
    and its test images alone) in which each bundle was predicted once, with no runs/, oof/, folds/ or cache/
    around."""
    root = tmp_path_factory.mktemp("offline")
    work = Path(shutil.copytree(trained_master, root / "work"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        stack.main([])
        for name, source in PICKS.items():  # one candidate and rule each: the estimates table is costly
            make_submission.main(["--source", source, "--rule", "f1", "--out", f"submissions/{name}.csv"])
            export.main(["--out", str(root / "fresh" / "bundles" / name), "--submission", f"submissions/{name}.csv"])
    fresh = root / "fresh"
    shutil.copytree(tiny_dataset_master, fresh / "data")
    shutil.copytree(tiny_dataset_master / "test", fresh / "images" / "test")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(fresh)
        for name in PICKS:
            predict.main(["--bundle", f"bundles/{name}", "--data", "data", "--out", f"{name}.csv"])
        predict.main(["--bundle", "bundles/single", "--data", "images", "--out", "table.csv"])
    return work, fresh


@pytest.mark.parametrize("name", list(PICKS))
def test_the_bundle_writes_the_submission_byte_for_byte(offline, name):
    work, fresh = offline
    assert sorted(p.name for p in fresh.iterdir()) == sorted(
        ["bundles", "data", "images", *(f"{n}.csv" for n in PICKS), "table.csv"]
    )
    assert (fresh / f"{name}.csv").read_bytes() == (work / "submissions" / f"{name}.csv").read_bytes()
    manifest = json.loads((fresh / "bundles" / name / "bundle.json").read_text())
    assert manifest["source"] == PICKS[name]
    assert all(file_hash(fresh / "bundles" / name / f) == h for f, h in manifest["files"].items())
    assert (manifest["stack"] is not None) == (name == "stack")


def test_a_folder_without_sample_submission_gets_labels_and_scores(offline):
    work, fresh = offline
    table = pd.read_csv(fresh / "table.csv", dtype={"Id": str, "Predicted": str}, keep_default_na=False)
    assert list(table.columns) == ["Id", "Predicted", *(f"p{c}" for c in range(28))]
    submission = pd.read_csv(work / "submissions" / "single.csv", dtype=str, keep_default_na=False)
    assert table["Id"].tolist() == sorted(submission["Id"])
    assert dict(zip(table["Id"], table["Predicted"])) == dict(zip(submission["Id"], submission["Predicted"]))
    assert table.iloc[:, 2:].to_numpy().min() >= 0 and table.iloc[:, 2:].to_numpy().max() <= 1


def test_a_tampered_bundle_file_is_refused_naming_it(offline, tmp_path, capsys):
    _, fresh = offline
    bundle = Path(shutil.copytree(fresh / "bundles" / "single", tmp_path / "bundle"))
    checkpoint = bundle / "experiments" / "tiny_effnet" / "fold1" / "checkpoint.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="fold1/checkpoint.pt differs from the file the bundle was written with"):
        predict.main(["--bundle", str(bundle), "--data", str(fresh / "data"), "--out", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


def test_an_export_without_a_submission_is_a_clean_error(offline, tmp_path, monkeypatch):
    work, _ = offline
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"no submission in submissions/ to export: run python -m solution.make_sub"):
        export.main(["--out", "bundle", "--oof-dir", str(work / "oof"), "--folds-dir", str(work / "folds")])
    assert not (tmp_path / "bundle").exists()


def test_an_export_replaces_only_a_bundle(offline, tmp_path, monkeypatch):
    work, _ = offline
    monkeypatch.chdir(work)
    (tmp_path / "mine").mkdir()
    with pytest.raises(SystemExit, match="holds no bundle.json: not the kit's to replace"):
        export.main(["--out", str(tmp_path / "mine"), "--submission", "submissions/single.csv"])
    assert list((tmp_path / "mine").iterdir()) == []


def test_the_recipe_averages_test_groups_then_gives_twins_their_labels():
    """A bundle of a twins submission: the group's rows share their mean, then a twin's labels replace its row's;
    images the bundle knows nothing of keep their own (other images than the competition's)."""
    manifest = BundleManifest(
        source="a",
        rule="f1",
        folds_hash="h",
        experiments={"a": {"config": {}, "n_folds": 2}},
        cutoffs=[0.5] * 28,
        at_least_one=False,
        submission="a.csv",
        csv_sha256="",
        provenance={},
        average_test_twins=True,
        twin_rule="transfer",
    )
    twin = np.eye(28, dtype=np.uint8)[27]
    recipe = Recipe(manifest, [], np.zeros((0, 28)), twin_labels={"z": twin}, groups={"x": 0, "y": 0})
    scores = np.zeros((4, 28))
    scores[0, 0], scores[1, 0], scores[3, 5] = 0.75, 0.25, 0.9
    averaged, pred = recipe.apply(scores, ["x", "y", "z", "new"])
    assert averaged[:2, 0].tolist() == [0.5, 0.5] and pred[:2, 0].tolist() == [0, 0]
    assert pred[2].tolist() == twin.tolist() and np.flatnonzero(pred[3]).tolist() == [5]
