import numpy as np
import pytest

from solution.core.tables import read_labels_csv
from solution.data.images import read_image
from solution.data.layout import STAINS, DatasetError, open_dataset


def first_train_id(root):
    return (root / "train.csv").read_text().splitlines()[1].split(",")[0]


def test_open_valid_dataset(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    assert len(ds.train_ids) == 40 and len(ds.test_ids) == 12
    assert ds.train_labels.shape == (40, 28) and ds.train_labels.sum(1).min() >= 1
    image = read_image(ds.image_paths("train", ds.train_ids[0]), 16)
    assert image.shape == (16, 16, 4) and image.dtype == np.uint8
    assert ds.test_labels().shape == (12, 28)


def test_missing_channel_file_is_named(tiny_dataset):
    image_id = first_train_id(tiny_dataset)
    (tiny_dataset / "train" / f"{image_id}_yellow.png").unlink()
    with pytest.raises(DatasetError, match=f"{image_id} has no {image_id}_yellow.png"):
        open_dataset(tiny_dataset)


def test_unreadable_image_is_named(tiny_dataset):
    image_id = first_train_id(tiny_dataset)
    bad = tiny_dataset / "train" / f"{image_id}_green.png"
    bad.write_bytes(b"not a png at all")
    ds = open_dataset(tiny_dataset)
    with pytest.raises(DatasetError, match=f"unreadable image: {bad}"):
        read_image(ds.image_paths("train", image_id), 16)


@pytest.mark.parametrize(
    "target, match",
    [
        ("3 28", "bad label '28'"),
        ("1 x", "bad label 'x'"),
        ("-1", "bad label '-1'"),
        ("", "empty Target"),
        ("2 2", "repeated label"),
    ],
)
def test_bad_target_names_row(tiny_dataset, target, match):
    lines = (tiny_dataset / "train.csv").read_text().splitlines()
    lines[3] = f"{lines[3].split(',')[0]},{target}"
    (tiny_dataset / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"train.csv:4: .*{match}"):
        open_dataset(tiny_dataset)


def test_malformed_row_and_header(tiny_dataset):
    path = tiny_dataset / "train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["a,1,2"] + lines[2:]) + "\n")
    with pytest.raises(DatasetError, match=r"train.csv:3: expected 2 columns"):
        open_dataset(tiny_dataset)
    path.write_text("Image,Label\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetError, match="expected header Id,Target"):
        open_dataset(tiny_dataset)


def test_duplicate_id_names_both_lines(tiny_dataset):
    path = tiny_dataset / "train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[2]]) + "\n")
    with pytest.raises(DatasetError, match=rf"train.csv:{len(lines) + 1}: duplicate Id .* \(first on line 3\)"):
        open_dataset(tiny_dataset)


def test_sample_submission_id_without_images(tiny_dataset):
    path = tiny_dataset / "sample_submission.csv"
    path.write_text(path.read_text() + "ffffffff-0000-0000-0000-000000000000,0\n")
    with pytest.raises(DatasetError, match="ffffffff-0000-0000-0000-000000000000 has no"):
        open_dataset(tiny_dataset)


def test_test_images_not_in_sample_submission(tiny_dataset):
    path = tiny_dataset / "sample_submission.csv"
    lines = path.read_text().splitlines()
    dropped = lines[-1].split(",")[0]
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=f"not in sample_submission.csv \\(e.g. '{dropped}'\\)"):
        open_dataset(tiny_dataset)


def test_id_in_train_and_test(tiny_dataset):
    test_id = (tiny_dataset / "sample_submission.csv").read_text().splitlines()[1].split(",")[0]
    with (tiny_dataset / "train.csv").open("a") as fh:
        fh.write(f"{test_id},0\n")
    with pytest.raises(DatasetError, match=f"{test_id}' is in both"):
        open_dataset(tiny_dataset)


def test_missing_files_and_folders(tiny_dataset):
    (tiny_dataset / "sample_submission.csv").unlink()
    with pytest.raises(DatasetError, match="missing file: .*sample_submission.csv"):
        open_dataset(tiny_dataset)
    with pytest.raises(DatasetError, match="dataset directory not found"):
        open_dataset(tiny_dataset / "nope")


def test_hpav18_rgb_jpegs_reduce_to_their_stain(hpav18_dir):
    ids, labels = read_labels_csv(hpav18_dir / "labels.csv")
    assert ids == ["800_A6_1", "89_B5_1"] and labels[0, 25] == 1 and labels[1, 6] == 1
    paths = tuple(hpav18_dir / f"800_A6_1_{s}.jpg" for s in STAINS)
    image = read_image(paths, 64)
    assert image.shape == (64, 64, 4)
    # each stain carries signal; the nucleus stain is not blank, and the blue file's red plane is not what we read
    assert all(image[..., c].mean() > 1 for c in range(4))
    import cv2

    blue_bgr = cv2.imread(str(paths[2]))
    assert blue_bgr[..., 0].mean() > blue_bgr[..., 2].mean()  # the blue file's signal is in its blue plane
    big = cv2.resize(blue_bgr[..., 0], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(big.astype(int) - image[..., 2].astype(int)).max() <= 1


def test_csv_with_bom_and_crlf_line_endings(tiny_dataset):
    path = tiny_dataset / "train.csv"
    text = path.read_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert len(open_dataset(tiny_dataset).train_ids) == 40


def test_hpav18_layout_of_rgb_jpegs_opens(hpav18_dir, tmp_path):
    """External HPAv18 images ({Id}_{stain}.jpg, RGB, 1728-2048 px) go through the same reader."""
    import shutil

    root = tmp_path / "hpav18"
    for split, image_id in (("train", "800_A6_1"), ("train", "89_B5_1"), ("test", "89_B5_1")):
        (root / split).mkdir(parents=True, exist_ok=True)
        for stain in STAINS:
            shutil.copy(hpav18_dir / f"{image_id}_{stain}.jpg", root / split / f"{image_id}_{stain}.jpg")
    shutil.copy(hpav18_dir / "labels.csv", root / "train.csv")
    (root / "test" / "89_B5_1_red.jpg").rename(root / "test" / "t1_red.jpg")
    for stain in ("green", "blue", "yellow"):
        (root / "test" / f"89_B5_1_{stain}.jpg").rename(root / "test" / f"t1_{stain}.jpg")
    (root / "sample_submission.csv").write_text("Id,Predicted\nt1,0\n")
    ds = open_dataset(root)
    assert ds.train_ids == ["800_A6_1", "89_B5_1"] and ds.test_ids == ["t1"]
    image = read_image(ds.image_paths("test", "t1"), 32)
    assert image.shape == (32, 32, 4) and image[..., 2].mean() > 1
