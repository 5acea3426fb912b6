"""Tests for the synthetic HPA-like dataset generator."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from solution.core.classes import CLASSES, ENDOSOMES, LYSOSOMES, NUM_CLASSES
from solution.core.errors import ConfigError
from solution.data.synthetic import OWN_MARK, STAINS, flip_labels, generate, render_field, sample_labels
from solution.synthetic import main

SMALL = {"n_train": 12, "n_test": 6, "size": 40}


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "out", seed=3, **SMALL)


def test_layout_and_csvs(dataset: Path) -> None:
    header, train = _rows(dataset / "train.csv")
    assert header == ["Id", "Target"] and len(train) == SMALL["n_train"]
    header, test = _rows(dataset / "test_labels.csv")
    assert header == ["Id", "Target"] and len(test) == SMALL["n_test"]
    header, submission = _rows(dataset / "sample_submission.csv")
    assert header == ["Id", "Predicted"]
    assert [r[0] for r in submission] == [r[0] for r in test]
    assert all(r[1] == "0" for r in submission)

    ids = [r[0] for r in train + test]
    assert len(set(ids)) == len(ids)
    for _, target in train + test:
        labels = [int(t) for t in target.split(" ")]
        assert 1 <= len(labels) <= 5 and all(0 <= t < NUM_CLASSES for t in labels)
    assert not (dataset.parent / "out.partial").exists()


@pytest.mark.parametrize("split, csv_name", [("train", "train.csv"), ("test", "test_labels.csv")])
def test_every_id_has_four_single_channel_pngs(dataset: Path, split: str, csv_name: str) -> None:
    _, rows = _rows(dataset / csv_name)
    expected = {f"{r[0]}_{stain}.png" for r in rows for stain in STAINS}
    assert {p.name for p in (dataset / split).iterdir()} == expected
    for name in sorted(expected)[:8]:
        image = cv2.imread(str(dataset / split / name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (SMALL["size"], SMALL["size"]) and image.dtype == np.uint8


def test_uuid_shaped_ids(dataset: Path) -> None:
    _, rows = _rows(dataset / "train.csv")
    parts = rows[0][0].split("-")
    assert [len(p) for p in parts] == [8, 4, 4, 4, 12]


def _fingerprint(root: Path) -> dict[str, bytes]:
    names = ["train.csv", "test_labels.csv", "sample_submission.csv"]
    names += sorted(str(p.relative_to(root)) for p in (root / "train").iterdir())[:6]
    names += sorted(str(p.relative_to(root)) for p in (root / "test").iterdir())[:4]
    return {name: (root / name).read_bytes() for name in names}


def test_same_seed_same_bytes_other_seed_differs(dataset: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", seed=3, **SMALL)
    assert _fingerprint(again) == _fingerprint(dataset)
    other = generate(tmp_path / "other", seed=4, **SMALL)
    assert (other / "train.csv").read_bytes() != (dataset / "train.csv").read_bytes()
    first_png = sorted((other / "train").iterdir())[0]
    assert all(first_png.read_bytes() != b for b in _fingerprint(dataset).values())


# sha256 over the relative paths and bytes of every file of generate(n_train=6, n_test=3, size=32, seed=3),
# recorded from the generator before density, brightness and label_noise existed.
DEMO_DATA_SHA256 = "17e6f119fa1dbbd0af7a13df6edf515dfc144aa224c676398ee970676e82c196"


def _tree_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_settings_write_the_demo_data_byte_for_byte(tmp_path: Path) -> None:
    out = generate(tmp_path / "out", n_train=6, n_test=3, size=32, seed=3)
    assert _tree_sha256(out) == DEMO_DATA_SHA256
    explicit = generate(
        tmp_path / "explicit", n_train=6, n_test=3, size=32, seed=3, density=1.0, brightness=1.0, label_noise=0.0
    )
    assert _tree_sha256(explicit) == DEMO_DATA_SHA256


def test_density_scales_the_cell_count_and_brightness_the_signal() -> None:
    def field(**settings: float) -> np.ndarray:
        return render_field([0], 64, np.random.default_rng(5), **settings)

    def cells(image: np.ndarray) -> int:
        nuclei = (image[..., 2] > 60).astype(np.uint8)
        return cv2.connectedComponents(nuclei)[0] - 1

    assert cells(field(density=2.0)) > cells(field())
    assert field(brightness=0.5).astype(float).mean() < 0.7 * field().astype(float).mean()


def test_label_noise_flips_train_labels_only_and_keeps_their_count(tmp_path: Path) -> None:
    clean = generate(tmp_path / "clean", n_train=200, n_test=20, size=32, seed=2)
    noisy = generate(tmp_path / "noisy", n_train=200, n_test=20, size=32, seed=2, label_noise=0.2)
    assert (noisy / "test_labels.csv").read_bytes() == (clean / "test_labels.csv").read_bytes()
    assert sorted((noisy / "train").iterdir())[0].read_bytes() == sorted((clean / "train").iterdir())[0].read_bytes()
    _, clean_rows = _rows(clean / "train.csv")
    _, noisy_rows = _rows(noisy / "train.csv")
    kept = total = 0
    for (clean_id, clean_target), (noisy_id, noisy_target) in zip(clean_rows, noisy_rows):
        true, written = set(clean_target.split()), set(noisy_target.split())
        assert clean_id == noisy_id and len(true) == len(written)
        kept, total = kept + len(true & written), total + len(true)
    assert 0.7 < kept / total < 0.9


def test_flip_labels_draws_only_absent_classes() -> None:
    rows = [[0, 25], [3], [11, 10, 5]]
    assert flip_labels(rows, 0.0, np.random.default_rng(0)) == rows
    flipped = flip_labels(rows, 1.0, np.random.default_rng(0))
    assert [len(r) for r in flipped] == [2, 1, 3]
    assert all(not set(r) & set(f) and len(set(f)) == len(f) for r, f in zip(rows, flipped))


@pytest.mark.parametrize("option", ["--density=0", "--brightness=-1", "--label-noise=1.5"])
def test_generator_settings_out_of_range_are_refused(tmp_path: Path, option: str) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "out"), "--n-train=2", "--n-test=1", "--size=32", option])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="brightness"):
        generate(tmp_path / "out", n_train=2, n_test=1, size=32, brightness=0)


def test_render_field_deterministic_and_shaped() -> None:
    a = render_field([0, 25], 48, np.random.default_rng(7))
    b = render_field([0, 25], 48, np.random.default_rng(7))
    assert a.shape == (48, 48, 4) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_endosomes_and_lysosomes_co_occur_and_label_counts() -> None:
    label_sets = sample_labels(5000, np.random.default_rng(0))
    for labels in label_sets:
        assert 1 <= len(labels) <= 5 and len(set(labels)) == len(labels)
        assert (ENDOSOMES in labels) == (LYSOSOMES in labels)
    assert sum(ENDOSOMES in labels for labels in label_sets) > 0


def test_label_marginals_follow_real_frequencies() -> None:
    n = 20000
    counts = np.zeros(NUM_CLASSES)
    for labels in sample_labels(n, np.random.default_rng(1)):
        counts[labels] += 1
    for c in CLASSES:
        if c.train_fraction > 0.02:
            ratio = counts[c.label] / n / c.train_fraction
            assert 1 / 1.6 < ratio < 1.6, (c.name, ratio)


def test_refuses_existing_output_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        generate(out, n_train=2, n_test=1, size=32)
    assert (out / "stale.txt").exists()

    main([str(out), "--n-train", "2", "--n-test", "1", "--size", "32", "--force"])
    assert not (out / "stale.txt").exists()
    assert (out / "train.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("beside", ["out.partial", "out.old"])
def test_a_users_folder_beside_the_output_is_never_deleted(tmp_path: Path, beside: str) -> None:
    (tmp_path / beside).mkdir()
    (tmp_path / beside / "mine.txt").write_text("the user's")
    with pytest.raises(SystemExit, match=f"error: .*{beside} exists and was not made by the generator"):
        main([str(tmp_path / "out"), "--n-train", "2", "--n-test", "1", "--size", "32"])
    assert (tmp_path / beside / "mine.txt").read_text() == "the user's" and not (tmp_path / "out").exists()


def test_a_partial_folder_left_by_a_killed_run_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / OWN_MARK).touch()  # as the generator's first step leaves it
    (tmp_path / "out.partial" / "half.png").write_bytes(b"half")
    generate(tmp_path / "out", n_train=2, n_test=1, size=32)
    generate(tmp_path / "out", n_train=2, n_test=1, size=32, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (tmp_path / "out" / OWN_MARK).exists()


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_the_current_folder_or_one_holding_it_is_refused(tmp_path: Path, monkeypatch, out: str) -> None:
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    (here / "notes.txt").write_text("keep")
    monkeypatch.chdir(here)
    with pytest.raises(SystemExit, match="error: .* is the current folder or holds it"):
        main([out, "--n-train", "2", "--n-test", "1", "--size", "32", "--force"])
    assert (here / "notes.txt").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def _green_inside_outside_nucleus(labels: list[int]) -> tuple[float, float]:
    inside, outside = [], []
    for seed in range(5):
        image = render_field(labels, 48, np.random.default_rng(seed)).astype(float)
        green, blue = image[..., 1], image[..., 2]
        nucleus = blue > 0.5 * blue.max()
        inside.append(green[nucleus].mean())
        outside.append(green[~nucleus].mean())
    return float(np.mean(inside)), float(np.mean(outside))


def test_nucleoplasm_green_sits_in_the_nucleus() -> None:
    inside, outside = _green_inside_outside_nucleus([0])
    assert inside > 3 * outside


def test_plasma_membrane_green_avoids_the_nucleus() -> None:
    inside, outside = _green_inside_outside_nucleus([21])
    assert inside < outside


def test_every_class_renders_a_visible_green_pattern() -> None:
    background = render_field([], 48, np.random.default_rng(0))[..., 1].astype(float).mean()
    for label in range(NUM_CLASSES):
        green = render_field([label], 48, np.random.default_rng(label))[..., 1].astype(float)
        assert green.max() > background + 60, CLASSES[label].name
