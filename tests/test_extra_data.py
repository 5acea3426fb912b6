"""Extra training data (HPAv18-style datasets) and duplicate-aware folds, end to end at a tiny size."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from solution import duplicates, folds, train
from solution.artifacts.folds import read_folds
from solution.core.errors import ArtifactError
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


def copy_into(src, source_id: str, dst, twin_id: str, target: str, change) -> None:
    """A changed copy of ``src``'s training image ``source_id`` as ``dst``'s image ``twin_id``, labelled ``target``."""
    for stain in ("red", "green", "blue", "yellow"):
        img = cv2.imread(str(src / "train" / f"{source_id}_{stain}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(dst / "train" / f"{twin_id}_{stain}.png"), np.ascontiguousarray(change(img)))
    (dst / "train.csv").write_text((dst / "train.csv").read_text() + f"{twin_id},{target}\n")


def test_extra_twins_of_validation_images_sit_out_their_fold_and_conflicts_leave(
    tiny_dataset, extra_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CONFIG)
    ids = pd.read_csv(tiny_dataset / "train.csv", dtype={"Id": str})
    same, other = ids.Target[0], "27" if "27" not in ids.Target[1].split() else "26"
    copy_into(tiny_dataset, ids.Id[0], extra_dir, "leak", same, lambda im: np.rot90(im))
    copy_into(tiny_dataset, ids.Id[1], extra_dir, "conflict", other, lambda im: np.clip(im[::-1] * 1.1, 0, 255))
    with pytest.raises(SystemExit, match="duplicates.csv was made without the extra dataset .*gen.*rerun `python "):
        duplicates.main(["--data", str(tiny_dataset), "--size", "32"])
        folds.main(["--data", str(tiny_dataset), "--extra", str(extra_dir)])
    duplicates.main(["--data", str(tiny_dataset), "--extra", str(extra_dir), "--size", "32"])
    folds.main(["--data", str(tiny_dataset), "--extra", str(extra_dir), "--force"])
    made = read_folds("folds")
    assert "1 of 14 images have a twin in train.csv with other labels (dropped from training" in capsys.readouterr().out
    fold_of = dict(zip(made.ids, made.fold))
    assert {(e.id, e.fold) for e in made.extra_excluded} == {("conflict", -1), ("leak", fold_of[ids.Id[0]])}
    assert made.meta.extra_conflicts == "drop" and (tmp_path / "folds" / "extra_excluded.csv").is_file()
    extra_ids = pd.read_csv(extra_dir / "train.csv", dtype={"Id": str}).Id.tolist()
    for k in range(5):
        rows = made.extra_rows(k, loop.open_extras(made), first=40)
        trained = {extra_ids[r - 40] for r in rows}
        assert "conflict" not in trained and ("leak" in trained) == (k != fold_of[ids.Id[0]])
        assert len(trained) == 14 - 1 - (k == fold_of[ids.Id[0]])

    seen = {}
    original = loop._loaders
    monkeypatch.setattr(loop, "_loaders", lambda *a: seen.setdefault("loaders", original(*a)))
    k = fold_of[ids.Id[0]]
    train.main(["--config", "c.yaml", "--fold", str(k)])
    n_val = int((made.fold == k).sum())
    assert len(seen["loaders"][0].dataset) == 40 - n_val + 12  # neither the conflict nor the leak trains fold k

    with pytest.raises(SystemExit, match="holds folds with extra_conflicts drop \\(asked: keep\\)"):
        folds.main(["--data", str(tiny_dataset), "--extra", str(extra_dir), "--extra-conflicts", "keep"])
    folds.main(["--data", str(tiny_dataset), "--extra", str(extra_dir), "--extra-conflicts", "keep", "--force"])
    kept = read_folds("folds")
    assert {(e.id, e.fold) for e in kept.extra_excluded} == {
        ("conflict", fold_of[ids.Id[1]]),  # kept, but never with the validation image it is a twin of
        ("leak", fold_of[ids.Id[0]]),
    }
    assert kept.hash != made.hash  # the folds hash covers which extra images sit out
    (tmp_path / "folds" / "extra_excluded.csv").write_text("extra,Id,fold,reason\n")
    with pytest.raises(ArtifactError, match="extra_excluded.csv does not match .*folds.json"):
        read_folds("folds")


def test_folds_hash_covers_the_extra_data_and_a_changed_extra_is_refused(tiny_dataset, extra_dir, tmp_path):
    folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "plain")])
    folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "with"), "--extra", str(extra_dir)])
    assert read_folds(tmp_path / "plain").hash != read_folds(tmp_path / "with").hash
    with pytest.raises(SystemExit, match="holds folds with extra .* pass --force"):
        folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "plain"), "--extra", str(extra_dir)])
    lines = (extra_dir / "train.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",27"
    (extra_dir / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match="changed since .*with/folds.json was made"):
        loop.open_extras(read_folds(tmp_path / "with"))


def plant_twin(dataset, source_id: str, twin_id: str, turns: int = 1, flip: bool = False, brighten: int = 10) -> None:
    """A rotated (flipped), brightened copy of a training image under a new Id, with the same labels."""
    for stain in ("red", "green", "blue", "yellow"):
        img = cv2.imread(str(dataset / "train" / f"{source_id}_{stain}.png"), cv2.IMREAD_UNCHANGED)
        turned = np.rot90(img[::-1] if flip else img, turns)
        twin = np.clip(turned.astype(int) + brighten, 0, 255).astype(np.uint8)
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


def test_train_folds_passes_extra_conflicts_to_the_folds(tiny_dataset, extra_dir, tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_folds.sh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["bash", str(script), "--data", str(tiny_dataset), "--extra", str(extra_dir), "--extra-conflicts", "nope"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "argument --extra-conflicts: invalid choice: 'nope'" in result.stderr


def test_folds_stop_naming_a_group_that_unbalances_them(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = pd.read_csv(tiny_dataset / "train.csv", dtype={"Id": str})["Id"][0]
    for n in range(14):  # 14 copies of one image, all twins of one another: one group of 15 in one fold
        plant_twin(tiny_dataset, source, f"copy{n}", turns=n % 4, flip=n >= 4, brighten=5 * (n % 3))
    duplicates.main(["--data", str(tiny_dataset), "--size", "32"])
    with pytest.raises(
        SystemExit,
        match="error: fold sizes .* % above the smallest, more than --max-fold-imbalance 0.1; the largest duplicate "
        r"group holds 15 training images \(group 0, e.g. .*\).* allow more with --max-fold-imbalance",
    ):
        folds.main(["--data", str(tiny_dataset)])
    assert not (tmp_path / "folds" / "folds.csv").exists()
    folds.main(["--data", str(tiny_dataset), "--max-fold-imbalance", "3"])
    assert "fold sizes: " in capsys.readouterr().out


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
