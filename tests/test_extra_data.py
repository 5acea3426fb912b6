"""Extra training data (HPAv18-style datasets) and duplicate-aware folds, end to end at a tiny size."""

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from solution import duplicates, folds, train
from solution.artifacts.folds import read_folds
from solution.data.synthetic import generate
from solution.training import loop

CONFIG = "backbone: test_resnet\nimage_size: 32\nbatch_size: 8\nepochs: 1\naugment: flips\ntta: none\nnum_workers: 0\n"


@pytest.fixture
def extra_dir(tmp_path):
    """A train-only dataset (train.csv and train/), as python -m solution.external writes."""
    root = generate(tmp_path / "gen", n_train=12, n_test=1, size=32, seed=9)
    shutil.rmtree(root / "test")
    for name in ("sample_submission.csv", "test_labels.csv"):
        (root / name).unlink()
    return root


def test_extra_images_train_every_fold_and_are_never_validated(tiny_dataset, extra_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CONFIG)
    folds.main(["--data", str(tiny_dataset), "--extra", str(extra_dir)])
    meta = json.loads((tmp_path / "folds" / "folds.json").read_text())
    assert [e["dir"] for e in meta["extra"]] == [str(extra_dir.resolve())]
    seen = {}
    original = loop._loaders
    monkeypatch.setattr(loop, "_loaders", lambda *a: seen.setdefault("loaders", original(*a)))
    train.main(["--config", "c.yaml", "--fold", "0"])
    train_loader, val_loader = seen["loaders"]
    n_val = int((read_folds("folds").fold == 0).sum())
    assert len(train_loader.dataset) == 40 - n_val + 12 and len(val_loader.dataset) == n_val
    oof = pd.read_parquet(tmp_path / "runs" / "c" / "fold0" / "oof.parquet")
    assert len(oof) == n_val and not set(oof["Id"]) & set(pd.read_csv(extra_dir / "train.csv")["Id"])


def test_folds_hash_covers_the_extra_data_and_a_changed_extra_is_refused(tiny_dataset, extra_dir, tmp_path):
    folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "plain")])
    folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "with"), "--extra", str(extra_dir)])
    assert read_folds(tmp_path / "plain").hash != read_folds(tmp_path / "with").hash
    with pytest.raises(SystemExit, match="holds folds with extra .* pass --force"):
        folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "plain"), "--extra", str(extra_dir)])
    lines = (extra_dir / "train.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",27"
    (extra_dir / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match="changed since folds/folds.json was made"):
        loop.open_extras(read_folds(tmp_path / "with"))


def plant_twin(dataset, source_id: str, twin_id: str) -> None:
    """A rotated, brightened copy of a training image under a new Id, with the same labels."""
    for stain in ("red", "green", "blue", "yellow"):
        img = cv2.imread(str(dataset / "train" / f"{source_id}_{stain}.png"), cv2.IMREAD_UNCHANGED)
        twin = np.clip(np.rot90(img).astype(int) + 10, 0, 255).astype(np.uint8)
        cv2.imwrite(str(dataset / "train" / f"{twin_id}_{stain}.png"), twin)
    lines = (dataset / "train.csv").read_text().splitlines()
    target = next(line.split(",")[1] for line in lines if line.startswith(source_id))
    (dataset / "train.csv").write_text("\n".join([*lines, f"{twin_id},{target}"]) + "\n")


def test_duplicates_land_in_one_fold_and_changed_groups_need_force(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ids = pd.read_csv(tiny_dataset / "train.csv")["Id"].tolist()
    for n, source in enumerate(ids[:6]):
        plant_twin(tiny_dataset, source, f"twin{n}")
    duplicates.main(["--data", str(tiny_dataset), "--size", "32"])
    folds.main(["--data", str(tiny_dataset)])
    table = pd.read_csv(tmp_path / "folds" / "folds.csv", dtype={"Id": str}).set_index("Id")
    assert "group" in table.columns
    for n, source in enumerate(ids[:6]):
        assert table.loc[source, "fold"] == table.loc[f"twin{n}", "fold"]
        assert table.loc[source, "group"] == table.loc[f"twin{n}", "group"] >= 0
    assert "groups of duplicates hold" in capsys.readouterr().out
    groups = tmp_path / "folds" / "duplicates_groups.csv"
    groups.write_text("".join(line for line in groups.open() if "twin0" not in line))  # other groups now
    with pytest.raises(SystemExit, match="holds folds with duplicates .* pass --force"):
        folds.main(["--data", str(tiny_dataset)])


def _with_ids_of(extra_dir, ids) -> None:
    """Rename the extra dataset's first images to ``ids``."""
    lines = (extra_dir / "train.csv").read_text().splitlines()
    for n, new in enumerate(ids, start=1):
        old = lines[n].split(",")[0]
        for png in (extra_dir / "train").glob(f"{old}_*.png"):
            png.rename(png.with_name(png.name.replace(old, new)))
        lines[n] = lines[n].replace(old, new)
    (extra_dir / "train.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("csv_name", ["train.csv", "sample_submission.csv"])
def test_extra_ids_that_are_training_or_test_ids_are_refused(tiny_dataset, extra_dir, tmp_path, csv_name):
    ids = pd.read_csv(tiny_dataset / csv_name)["Id"].tolist()[:2]
    _with_ids_of(extra_dir, ids)
    argv = ["--data", str(tiny_dataset), "--out", str(tmp_path / "f"), "--extra", str(extra_dir)]
    with pytest.raises(SystemExit, match=f"error: extra dataset .*gen: 2 Id\\(s\\) also in .*{csv_name} \\(e.g. "):
        folds.main(argv)
    assert not (tmp_path / "f").exists()


def test_the_dataset_as_its_own_extra_or_one_extra_twice_is_refused(tiny_dataset, extra_dir, tmp_path):
    with pytest.raises(SystemExit, match=r"error: extra dataset .*data: 40 Id\(s\) also in .*data/train.csv"):
        folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "f"), "--extra", str(tiny_dataset)])
    with pytest.raises(SystemExit, match=r"error: extra dataset .*gen: 12 Id\(s\) also in .*gen/train.csv"):
        folds.main(
            ["--data", str(tiny_dataset), "--out", str(tmp_path / "f"), "--extra", str(extra_dir), str(extra_dir)]
        )
