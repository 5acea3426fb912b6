"""Tests for the synthetic HPA-like dataset generator."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from solution.core.classes import CLASSES, ENDOSOMES, LYSOSOMES, NUM_CLASSES
from solution.core.errors import ConfigError
from solution.data.synthetic import OWN_MARK, STAINS, generate, render_field, sample_labels
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
