"""Bad inputs and faults: each is a clear error or correct behaviour, and nothing written is lost or mixed."""

import errno
import json
import os
import resource
import shutil
import signal
from pathlib import Path

import cv2
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import folds_of, manifest_of, png_header_only

from solution import folds, make_submission, report, stack, train
from solution.artifacts.folds import ensure_folds, read_folds
from solution.artifacts.oof import probs_frame, read_predictions, write_predictions
from solution.artifacts.runs import FoldRun
from solution.artifacts.submissions import Sidecar
from solution.core.cli import user_errors
from solution.core.errors import ArtifactError, ConfigError, DatasetError
from solution.core.fileio import atomic_write_text
from solution.core.tables import read_labels_csv
from solution.data.cache import load_images
from solution.data.images import read_image, stain_plane
from solution.data.layout import open_dataset
from solution.data.synthetic import generate
from solution.training.config import build_config


def test_artifacts_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_other_fold_settings_than_the_existing_ones_name_force(tiny_dataset, tmp_path):
    ensure_folds(tiny_dataset, tmp_path, None, None, force=False)
    ensure_folds(tiny_dataset, tmp_path, None, None, force=False)  # unspecified: keep what exists
    ensure_folds(tiny_dataset, tmp_path, 5, 42, force=False)  # the same settings: keep
    with pytest.raises(ConfigError, match=r"n_folds 5 \(asked: 3\), seed 42 \(asked: 7\): pass --force"):
        ensure_folds(tiny_dataset, tmp_path, 3, 7, force=False)
    assert ensure_folds(tiny_dataset, tmp_path, 3, 7, force=True).n_folds == 3


def test_ids_that_look_like_missing_values_stay_ids(tiny_dataset, tmp_path):
    text = (tiny_dataset / "train.csv").read_text().splitlines()
    old = [line.split(",")[0] for line in text[1:4]]
    new = ["NA", "None", "null"]
    for o, n in zip(old, new):
        for stain in ("red", "green", "blue", "yellow"):
            (tiny_dataset / "train" / f"{o}_{stain}.png").rename(tiny_dataset / "train" / f"{n}_{stain}.png")
    body = "\n".join(text).replace(old[0], new[0]).replace(old[1], new[1]).replace(old[2], new[2])
    (tiny_dataset / "train.csv").write_text(body + "\n")
    ensure_folds(tiny_dataset, tmp_path, None, None, force=False)
    assert set(new) <= set(read_folds(tmp_path).ids)


@pytest.mark.parametrize("name", ["stack", "../../x", "a/b", ".hidden", ""])
def test_experiment_names_are_plain_and_stack_is_reserved(name):
    with pytest.raises(ConfigError, match="must be letters, digits"):
        build_config({"name": name}, "test")


def test_name_that_escapes_runs_is_refused_before_anything_is_written(trained):
    with pytest.raises(SystemExit, match="experiment name '../../x'"):
        train.main(["--config", "configs/tiny_effnet.yaml", "--name", "../../x"])
    assert not (trained.parent / "x").exists()


@pytest.mark.parametrize("out", ["sub.json", "submissions"])
def test_submission_out_must_be_a_csv_file(trained, out):
    (trained / "submissions").mkdir(exist_ok=True)
    with pytest.raises(SystemExit, match="a submission is a .csv file|is a folder"):
        make_submission.main(["--source", "tiny_effnet", "--out", out])


def test_bad_test_labels_leave_the_old_submission_and_sidecar(trained, tiny_dataset_master):
    make_submission.main(["--source", "tiny_effnet"])
    csv, sidecar = (trained / "submissions" / "tiny_effnet.csv"), (trained / "submissions" / "tiny_effnet.json")
    before = csv.read_bytes(), sidecar.read_bytes()
    data = trained / "data_copy"
    shutil.copytree(tiny_dataset_master, data)
    (data / "test_labels.csv").write_text("Id,Target\nnope,99\n")
    with pytest.raises(SystemExit, match="test_labels.csv"):
        make_submission.main(["--source", "tiny_convnext", "--data", str(data), "--out", str(csv)])
    assert (csv.read_bytes(), sidecar.read_bytes()) == before


def test_a_submission_and_a_sidecar_that_disagree_are_not_uploaded(trained, monkeypatch):
    make_submission.main(["--source", "tiny_effnet"])
    csv = trained / "submissions" / "tiny_effnet.csv"
    csv.write_text(csv.read_text().replace("\n", "\r\n"))  # e.g. killed between the two renames
    sidecar = Sidecar.from_json(json.loads(csv.with_suffix(".json").read_text()), csv.with_suffix(".json"))
    monkeypatch.setattr(make_submission, "write_submission", lambda *a: (sidecar, csv))
    with pytest.raises(SystemExit, match="is not the file .*tiny_effnet.json describes"):
        make_submission.main(["--source", "tiny_effnet", "--submit"])


def _set(tmp_path, seed):
    rng = np.random.default_rng(seed)
    oof, test = probs_frame(["a", "b"], rng.random((2, 28))), probs_frame(["t"], rng.random((1, 28)))
    write_predictions(tmp_path / f"set{seed}", oof, test, manifest_of(f"set{seed}", "h"))
    return tmp_path / f"set{seed}"


def test_a_set_mixed_by_a_kill_between_renames_is_refused(tmp_path):
    folds_ = folds_of(["a", "b"], "h")
    old, new = _set(tmp_path, 0), _set(tmp_path, 1)
    shutil.copy(new / "oof.parquet", old / "oof.parquet")  # the new oof renamed, the rest still old
    with pytest.raises(ArtifactError, match="oof.parquet is not the file .*manifest.json was written with"):
        read_predictions(old, folds_)


def test_a_corrupt_parquet_is_named(tmp_path):
    folds_ = folds_of(["a", "b"], "h")
    path = _set(tmp_path, 0)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "test.parquet").write_bytes(b"PAR1 truncated")
    manifest["files"].pop("test.parquet")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="test.parquet: not a readable parquet file"):
        read_predictions(path, folds_)


def test_a_corrupt_checkpoint_is_named(trained):
    run = trained / "runs" / "tiny_effnet" / "fold0"
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (run / "predictions.json").unlink()
    from solution import predict

    with pytest.raises(SystemExit, match="checkpoint.pt is unreadable or not a state saved by the kit"):
        predict.main(["--config", "configs/tiny_effnet.yaml"])


def test_unknown_backbone_is_caught_before_any_cache_is_built(trained):
    shutil.rmtree(trained / "cache", ignore_errors=True)
    (trained / "configs" / "typo.yaml").write_text("backbone: resnet34x\n")
    with pytest.raises(SystemExit, match="unknown timm model 'resnet34x'"):
        train.main(["--config", "configs/typo.yaml"])
    assert not (trained / "cache").exists()


def test_disk_full_is_a_clean_error(trained, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "oof/stack/oof.parquet")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(SystemExit, match=r"No space left on device \(oof/stack/oof.parquet\)"):
        stack.main([])
    assert not (trained / "oof" / "stack").exists() or not list((trained / "oof" / "stack").glob(".*.tmp"))


def test_a_full_disk_as_pyarrow_reports_it_names_the_file(trained, monkeypatch):
    def full(*args, **kwargs):  # what pyarrow raises on ENOSPC: no file named
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(SystemExit, match=r"error: Error writing bytes to file.* \(oof/stack/oof.parquet\)"):
        stack.main([])


def test_a_full_disk_under_the_report_names_the_file(trained, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for owner, writer, named in [
        (matplotlib.figure.Figure, "savefig", r"[\w.-]+\.png"),
        (Path, "write_text", "index.html"),
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(owner, writer, full)
            with pytest.raises(SystemExit, match=rf"error: No space left on device \(elsewhere/{named}\)"):
                report.main(["--out", "elsewhere"])
    assert not list((trained / "elsewhere").glob(".*.tmp"))


def test_a_full_disk_while_saving_a_state_names_the_file_and_keeps_the_old_one(tmp_path):
    """torch's writer reports a failed write (a full disk) as a RuntimeError naming no file ("[enforce fail at
    inline_container.cc:672]"); here the kernel refuses the write by a file size limit (EFBIG: the same failed
    write as ENOSPC, on any file system)."""
    run = FoldRun(tmp_path, "e", 0, {"config": {}}, "none")
    run.save_state(run.last, model=torch.zeros(4))
    before = run.last.read_bytes()
    limit, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, limit[1]))
    try:
        with pytest.raises(SystemExit, match=rf"error: File too large \({run.last}\); nothing was half-written"):
            with user_errors():
                run.save_state(run.last, model=torch.zeros(1 << 20))  # 4 MiB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert run.last.read_bytes() == before and os.listdir(run.dir) == ["last.pt"]


def test_folds_cli_keeps_existing_folds_when_no_setting_is_given(trained, tiny_dataset_master):
    before = read_folds("folds").hash
    folds.main(["--data", str(tiny_dataset_master)])
    assert read_folds("folds").hash == before


def test_two_files_for_one_stain_are_refused_naming_both(tiny_dataset):
    image_id = (tiny_dataset / "train.csv").read_text().splitlines()[1].split(",")[0]
    shutil.copy(tiny_dataset / "train" / f"{image_id}_green.png", tiny_dataset / "train" / f"{image_id}_green.jpg")
    with pytest.raises(
        DatasetError, match=f"two files for one stain: .*{image_id}_green.(png|jpg) and .*{image_id}_green"
    ):
        open_dataset(tiny_dataset)


@pytest.mark.parametrize("label", ["٣", "²", "3.0", "-1"])
def test_labels_are_ascii_digits(tmp_path, label):
    (tmp_path / "train.csv").write_text(f"Id,Target\na,1 {label}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"train.csv:2: bad label '{label}'"):
        read_labels_csv(tmp_path / "train.csv")


def test_a_csv_in_another_encoding_is_named(tmp_path):
    (tmp_path / "train.csv").write_bytes("Id,Target\nél,1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="train.csv: not UTF-8 text"):
        read_labels_csv(tmp_path / "train.csv")


def test_a_field_beyond_the_csv_limit_is_named_with_its_line(tmp_path):
    (tmp_path / "train.csv").write_text("Id,Target\na,1\nb," + "1 " * 100_000 + "\n")
    with pytest.raises(DatasetError, match=r"train.csv:3: not a CSV row of Id,Target \(field larger than field limit"):
        read_labels_csv(tmp_path / "train.csv")
    (tmp_path / "train.csv").write_text("Id,Target\na,1\nb," + "1 " * 50_000 + "\n")  # within the limit
    with pytest.raises(DatasetError, match=r"train.csv:3: repeated label in Target '1 1 1 ") as err:
        read_labels_csv(tmp_path / "train.csv")
    assert len(str(err.value)) < 500


def test_float_images_in_0_1_are_scaled_and_others_refused(tmp_path):
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(stain_plane(ramp, "green", "f.tif"), np.rint(ramp * 255).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"f.tif: a floating-point image must hold values in \[0, 1\]"):
        stain_plane(ramp * 4, "green", "f.tif")


def test_16_bit_images_use_their_range_and_warn_on_12_bit_data(caplog):
    full = np.full((4, 4), 65535, np.uint16)
    assert stain_plane(full, "red", "a.png").max() == 255
    twelve_bit = np.full((4, 4), 4000, np.uint16)
    with caplog.at_level("WARNING", logger="solution"):
        out = stain_plane(twelve_bit, "red", "cam.png")
    assert (
        out.max() == round(4000 * 255 / 65535) and "cam.png: 16-bit image whose values stay below 4096" in caplog.text
    )


@pytest.mark.parametrize("side, match", [(9000, "9000 x 9000 pixels, beyond"), (30000, "an image beyond")])
def test_an_image_beyond_the_pixel_limit_is_refused_by_its_header(tiny_dataset, side, match):
    dataset = open_dataset(tiny_dataset)
    paths = dataset.image_paths("train", dataset.train_ids[0])
    paths[2].write_bytes(png_header_only(side, side))
    with pytest.raises(DatasetError, match=f"{paths[2].name}: {match} the limit of 67,108,864 pixels"):
        read_image(paths, 32)


def test_a_float_tiff_caches_its_pixels_not_zeros(tiny_dataset, tmp_path):
    image_id = (tiny_dataset / "train.csv").read_text().splitlines()[1].split(",")[0]
    png = tiny_dataset / "train" / f"{image_id}_red.png"
    pixels = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    png.unlink()
    cv2.imwrite(str(png.with_suffix(".tif")), pixels.astype(np.float32) / 255)
    dataset = open_dataset(tiny_dataset)
    images = load_images(dataset, "train", dataset.train_ids, 32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(images[dataset.train_ids.index(image_id)][..., 0], pixels)


def test_changed_source_images_are_not_read_from_a_stale_cache(tiny_dataset, tmp_path):
    dataset = open_dataset(tiny_dataset)
    first = np.array(load_images(dataset, "train", dataset.train_ids, 32, cache_dir=tmp_path / "cache"))
    for png in (tiny_dataset / "train").glob("*_green.png"):
        png.write_bytes((tiny_dataset / "train" / png.name.replace("_green", "_blue")).read_bytes())
    again = load_images(open_dataset(tiny_dataset), "train", dataset.train_ids, 32, cache_dir=tmp_path / "cache")
    assert not np.array_equal(first[..., 1], again[..., 1])
    np.testing.assert_array_equal(again[..., 1], again[..., 2])


def test_a_corrupt_cache_file_is_named_with_the_fix(tiny_dataset, tmp_path):
    dataset = open_dataset(tiny_dataset)
    load_images(dataset, "train", dataset.train_ids, 32, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("train-*.npy")
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.raises(DatasetError, match="is corrupt .*delete it and rerun to rebuild it"):
        load_images(dataset, "train", dataset.train_ids, 32, cache_dir=tmp_path / "cache")


def test_a_fold_with_one_training_image_is_refused_before_batchnorm(tmp_path, monkeypatch):
    data = generate(tmp_path / "two", n_train=2, n_test=1, size=32, seed=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("backbone: test_resnet\nimage_size: 32\nepochs: 1\nnum_workers: 0\n")
    folds.main(["--data", str(data), "--n-folds", "2"])
    with pytest.raises(SystemExit, match="fold 0 leaves fewer than 2 training images per process"):
        train.main(["--config", "c.yaml", "--fold", "0"])


@pytest.mark.parametrize("command, seed", [(folds, "-1"), (folds, "4294967296"), (stack, "-1")])
def test_a_seed_out_of_range_names_the_option_and_the_range(trained, tiny_dataset_master, capsys, command, seed):
    argv = ["--data", str(tiny_dataset_master), "--out", "new_folds"] if command is folds else []
    with pytest.raises(SystemExit) as exit_:
        command.main([*argv, "--seed", seed])
    assert exit_.value.code == 2
    expected = f"error: argument --seed: must be a number at least 0 and at most 4294967295, got {seed}"
    assert expected in capsys.readouterr().err


def test_the_largest_seed_trains_a_fold_it_is_added_to(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("backbone: test_resnet\nimage_size: 32\nepochs: 1\nnum_workers: 0\ntta: none\n")
    folds.main(["--data", str(tiny_dataset)])
    train.main(["--config", "c.yaml", "--fold", "1", "--seed", str(2**32 - 1)])  # numpy is seeded with 0
    assert json.loads((tmp_path / "runs" / "c" / "fold1" / "metrics.json").read_text())["fold"] == 1
