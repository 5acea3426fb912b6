import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from solution.artifacts.folds import (
    GROUP_COLUMNS,
    PAIR_COLUMNS,
    DuplicatesMeta,
    groups_path,
    make_folds,
    read_groups,
    read_twins,
)
from solution.benchmarks.data_hash import plant_copies, smooth_images
from solution.core.errors import ArtifactError
from solution.data.cache import load_images
from solution.data.duplicates import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_CORRELATION,
    Images,
    _dct_rows,
    find_pairs,
    image_fingerprints,
    linked_groups,
    pair_duplicates,
    stain_correlations,
)
from solution.data.layout import STAINS, open_dataset, open_train_only
from solution.data.synthetic import render_field, sample_labels
from solution.duplicates import main


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    planes = [
        cv2.imdecode(cv2.imencode(".jpg", image[..., c], [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 0) for c in range(4)
    ]
    return np.stack(planes, axis=-1)


def affine(image: np.ndarray, gain, offset: float = 0.0) -> np.ndarray:
    return np.clip(image * np.asarray(gain, np.float32) + offset, 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return affine(image + np.random.default_rng(seed).normal(0, sigma, image.shape), 1.0)


def resampled(image: np.ndarray, via: int) -> np.ndarray:
    size = image.shape[0]
    return cv2.resize(cv2.resize(image, (via, via), interpolation=cv2.INTER_AREA), (size, size))


COPIES = {
    "flipped": lambda im: im[:, ::-1],
    "rotated": lambda im: np.rot90(im),
    "rotated and flipped": lambda im: np.rot90(im, 3)[::-1],
    "brightened": lambda im: affine(im, 1.0, 30),
    "contrast": lambda im: affine(im, 1.5),
    "per-stain contrast": lambda im: affine(im, [1.3, 0.7, 1.1, 0.8]),
    "noised": lambda im: noisy(im, 4, 0),
    "jpeg": lambda im: jpeg(im, 50),
    "resized": lambda im: resampled(im, 40),
    "all at once": lambda im: jpeg(noisy(affine(np.rot90(im), 0.8, 15), 2, 1), 70),
}


def image_hashes(images: np.ndarray) -> np.ndarray:
    return image_fingerprints(images).hashes


@pytest.fixture(scope="module")
def fields():
    """Distinct synthetic fields of view (64 px) and their labels."""
    labels = sample_labels(48, np.random.default_rng(5))
    images = np.stack([render_field(lab, 64, np.random.default_rng((5, i))) for i, lab in enumerate(labels)])
    matrix = np.zeros((len(labels), 28), np.uint8)
    for i, lab in enumerate(labels):
        matrix[i, lab] = 1
    return images, matrix


def brute_force(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int, int]]:
    distance = np.bitwise_count(hashes[:, None, :1] ^ hashes[None, :, :]).min(axis=2).astype(int)
    i, j = np.nonzero(np.triu(distance <= max_distance, 1))
    return set(zip(i.tolist(), j.tolist(), distance[i, j].tolist()))


def as_set(pairs) -> set[tuple[int, int, int]]:
    return set(zip(*(p.tolist() for p in pairs)))


def test_planted_copies_are_found_and_distinct_images_are_not(fields):
    images, labels = fields
    copies = np.stack([np.ascontiguousarray(make(images[k])) for k, make in enumerate(COPIES.values())])
    big = render_field([0], 128, np.random.default_rng(99))
    small = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    hashes = np.concatenate(
        [image_hashes(images), image_hashes(copies), image_hashes(big[None]), image_hashes(small[None])]
    )
    a, b, distance = find_pairs(hashes)
    n = len(images)
    expected = {(k, n + k) for k in range(len(COPIES))} | {(n + len(COPIES), n + len(COPIES) + 1)}
    found = set(zip(a.tolist(), b.tolist()))
    missed = [name for k, name in enumerate(COPIES) if (k, n + k) not in found]
    assert not missed, f"copies not found: {missed}"
    assert found == expected, f"false pairs: {found - expected}"
    assert distance.max() <= DEFAULT_MAX_DISTANCE
    # flips and rotations alone change nothing
    exact = image_hashes(np.stack([images[0], images[0][::-1], np.rot90(images[0], 2), images[0].transpose(1, 0, 2)]))
    assert find_pairs(exact, 0)[0].size == 6

    # every planted copy passes the stain check and shares its original's fold
    prints = image_fingerprints(np.concatenate([images, copies]))
    correlation = stain_correlations(prints.check, a[b < n + len(COPIES)], b[b < n + len(COPIES)])
    weak = [name for name, c in zip(COPIES, correlation) if c < DEFAULT_MIN_CORRELATION]
    assert not weak, f"copies rejected by the stain check: {weak}"
    keep = b < n + len(COPIES)
    groups = linked_groups(n + len(COPIES), a[keep], b[keep], correlation)
    all_labels = np.concatenate([labels, labels[: len(COPIES)]])
    fold = make_folds(all_labels, n_folds=4, seed=0, groups=groups)
    assert all(groups[k] >= 0 and groups[k] == groups[n + k] for k in range(len(COPIES)))
    assert all(fold[k] == fold[n + k] for k in range(len(COPIES)))
    assert set(fold) == {0, 1, 2, 3}


def spliced(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """An image with the hash's low frequencies of ``low`` (each stain's 8x8 lowest DCT coefficients) and every
    other frequency of ``high``: a chance pair of ``low`` by its hash, nothing like it above."""
    dct = _dct_rows(low.shape[0], low.shape[0]).astype(np.float64)
    out = np.empty(low.shape, np.float64)
    for c in range(low.shape[2]):
        coeffs = dct @ high[..., c].astype(np.float64) @ dct.T
        coeffs[:8, :8] = (dct @ low[..., c].astype(np.float64) @ dct.T)[:8, :8]
        out[..., c] = dct.T @ coeffs @ dct
    return np.clip(out, 0, 255).astype(np.uint8)


def test_the_stain_check_rejects_chance_pairs_and_copies_make_one_group():
    source, other, third = (render_field([0], 32, np.random.default_rng((4, i))) for i in range(3))
    images = np.stack(
        [
            source,
            spliced(source, other),  # 1: a chance pair of 0 by its hash
            affine(source[::-1], 1.2, 10),  # 2: a copy of 0
            noisy(np.rot90(source), 3, 1),  # 3: another copy of 0
            third,  # 4: unrelated
            spliced(third, source),  # 5: a chance pair of 4, whose high frequencies are 0's
        ]
    )
    found = pair_duplicates(
        Images(np.array(list("abcdef"), object), np.array(["train"] * 6, object), np.zeros((6, 28)), np.ones(6, bool)),
        image_fingerprints(images),
        DEFAULT_MAX_DISTANCE,
        DEFAULT_MIN_CORRELATION,
    )
    pairs = {(int(i), int(j)): bool(t) for i, j, t in zip(found.a, found.b, found.twin)}
    assert pairs[0, 1] is False and pairs[4, 5] is False  # hashed as pairs, rejected by the check
    assert pairs[0, 2] and pairs[0, 3] and pairs[2, 3]
    assert found.groups.tolist() == [0, -1, 0, 0, -1, -1]


def test_linked_groups_are_cliques_not_chains():
    chain = linked_groups(6, np.array([0, 3, 1]), np.array([3, 4, 5]), np.array([0.9, 0.8, 0.95]))
    assert chain.tolist() == [0, 1, -1, 0, -1, 1]  # 0~3 and 3~4 do not join 0 to 4; 1~5 is a group
    clique = linked_groups(5, np.array([0, 1, 0, 2]), np.array([1, 2, 2, 3]), np.array([0.9, 0.9, 0.8, 0.99]))
    assert clique.tolist() == [0, 0, 1, 1, -1]  # the strongest pair 2~3 first, then 0~1; 1~2 cannot join them


def test_bucketing_finds_the_pairs_of_brute_force():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**64, size=(1500, 8), dtype=np.uint64)
    for i in range(300):  # near copies, in any orientation, at every distance up to 16
        j, orientation = rng.integers(len(hashes)), rng.integers(8)
        flips = rng.choice(64, rng.integers(0, 17), replace=False)
        hashes[j] = hashes[i, orientation] ^ np.uint64(sum(1 << int(f) for f in flips))
    hashes[40:50] = hashes[39]  # a clump of identical hashes
    for max_distance in (0, 3, 8, 9, 14):
        assert as_set(find_pairs(hashes, max_distance)) == brute_force(hashes, max_distance)
    assert as_set(find_pairs(hashes[:, :1], 5)) == brute_force(hashes[:, :1], 5)


def test_folds_keep_groups_whole_and_stratified():
    rng = np.random.default_rng(0)
    labels = (rng.random((600, 28)) < np.linspace(0.02, 0.15, 28)).astype(np.uint8)
    groups = np.full(600, -1)
    members = rng.choice(600, 240, replace=False)
    groups[members] = np.repeat(np.arange(80), 3)  # 80 groups of 3 images
    fold = make_folds(labels, n_folds=5, seed=2, groups=groups)
    for g in range(80):
        assert len(set(fold[groups == g])) == 1
    assert np.bincount(fold).min() >= 100

    def deviation(f):  # mean gap between a fold's class prevalence and the whole's
        return np.mean([np.abs(labels[f == k].mean(0) - labels.mean(0)) for k in range(5)])

    assert deviation(fold) < 0.6 * deviation(rng.permutation(np.arange(600) % 5))
    np.testing.assert_array_equal(fold, make_folds(labels, n_folds=5, seed=2, groups=groups))
    np.testing.assert_array_equal(make_folds(labels, 5, 2, groups=np.full(600, -1)), make_folds(labels, 5, 2))
    with pytest.raises(ValueError, match="cannot make 5 folds from 3 images"):
        make_folds(labels[:6], n_folds=5, seed=0, groups=np.array([0, 0, 1, 1, 2, 2]))


def test_benchmark_images_plant_findable_copies():
    rng = np.random.default_rng(0)
    images = plant_copies(smooth_images(1000, 64, rng), 40, rng)
    prints = image_fingerprints(images)
    a, b, _ = find_pairs(prints.hashes)
    correlation = stain_correlations(prints.check, a, b)
    groups = linked_groups(len(images), a, b, correlation)
    assert all(groups[i] >= 0 and groups[i] == groups[-1 - i] for i in range(40))
    assert correlation.min() >= DEFAULT_MIN_CORRELATION


def write_image(folder, image_id: str, image: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for c, stain in enumerate(STAINS):
        cv2.imwrite(str(folder / f"{image_id}_{stain}.png"), np.ascontiguousarray(image[..., c]))


def read_planes(folder, image_id: str) -> np.ndarray:
    return np.stack([cv2.imread(str(folder / f"{image_id}_{s}.png"), 0) for s in STAINS], axis=-1)


def copy_image(src_dir, src_id, dst_dir, dst_id, change) -> None:
    write_image(dst_dir, dst_id, change(read_planes(src_dir, src_id)))


def append_row(path, row: str) -> None:
    path.write_text(path.read_text() + row + "\n")


def test_command_line_writes_pairs_groups_and_what_it_hashed(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the image cache goes to ./cache
    ds = open_dataset(tiny_dataset)
    train, test = tiny_dataset / "train", tiny_dataset / "test"
    # a train image again in test (flipped), a test image in the extra set, a train image twice with other labels,
    # and a test image whose hash pairs it with a train image that it is nothing like (rejected by the check)
    copy_image(train, ds.train_ids[0], test, "test-twin", lambda im: im[::-1])
    append_row(tiny_dataset / "sample_submission.csv", "test-twin,0")
    extra = tmp_path / "hpav18"
    copy_image(test, ds.test_ids[0], extra / "train", "1_2_A1_1", lambda im: affine(np.rot90(im), 1.2, 10))
    (extra / "train.csv").write_text("Id,Target\n1_2_A1_1,5\n")
    copy_image(train, ds.train_ids[1], train, "train-twin", lambda im: im)
    other = "27" if ds.train_labels[1, 27] == 0 else "26"
    append_row(tiny_dataset / "train.csv", f"train-twin,{other}")
    write_image(test, "test-chance", spliced(read_planes(train, ds.train_ids[2]), read_planes(train, ds.train_ids[3])))
    append_row(tiny_dataset / "sample_submission.csv", "test-chance,0")

    out = tmp_path / "folds" / "duplicates.csv"
    main(["--data", str(tiny_dataset), "--extra", str(extra), "--size", "32", "--out", str(out)])
    pairs = pd.read_csv(out)
    assert tuple(pairs.columns) == PAIR_COLUMNS
    found = set(zip(pairs.id_a, pairs.split_a, pairs.id_b, pairs.split_b, pairs.twin))
    twins = {
        (ds.train_ids[0], "train", "test-twin", "test", 1),
        (ds.train_ids[1], "train", "train-twin", "train", 1),
        (ds.test_ids[0], "test", "1_2_A1_1", "hpav18", 1),
    }
    assert found == twins | {(ds.train_ids[2], "train", "test-chance", "test", 0)}
    assert set(zip(*(read_twins(out).pairs[c] for c in PAIR_COLUMNS[:4]))) == {t[:4] for t in twins}
    meta = DuplicatesMeta.read(out)
    assert meta.sources == {
        "train": str(tiny_dataset.resolve()),
        "test": str(tiny_dataset.resolve()),
        "hpav18": str(extra.resolve()),
    }
    assert (meta.size, meta.max_distance, meta.min_correlation) == (32, 8, DEFAULT_MIN_CORRELATION)
    groups = pd.read_csv(groups_path(out))
    assert tuple(groups.columns) == GROUP_COLUMNS and len(groups) == 6
    train_groups = read_groups(groups_path(out), open_dataset(tiny_dataset).train_ids)
    assert train_groups[1] >= 0 and train_groups[1] == train_groups[-1] and (train_groups >= 0).sum() == 3
    printed = capsys.readouterr().out
    assert "pairs within 8 bits: 4; rejected by the stain check (correlation below 0.75): 1; twins: 3" in printed
    assert "groups: 3 (6 of 56 images); largest group: 2 images (group 0, e.g. train image" in printed
    assert "twins the linkage kept in different groups (each not a twin of every member of the other's group): 0" in (
        printed
    )
    assert "groups joining test images to training images: 2" in printed
    assert "twins among training images: 1, with different labels: 1" in printed
    assert not list(out.parent.glob("*.tmp"))

    # A cache of a larger size is read (and resized) instead of decoding the images again
    shutil.rmtree(tmp_path / "cache")
    full, hpav18 = open_dataset(tiny_dataset), open_train_only(extra)
    for dataset, split in ((full, "train"), (full, "test"), (hpav18, "train")):
        load_images(dataset, split, dataset.ids_of(split), 48)
    main(["--data", str(tiny_dataset), "--extra", str(extra), "--size", "32", "--out", str(out)])
    assert "read from the 48 px cache, resized to 32 px" in capsys.readouterr().out
    assert not list((tmp_path / "cache").glob("*-32px-*.npy"))  # none built at 32 px
    again = pd.read_csv(out)
    assert set(zip(again.id_a, again.split_a, again.id_b, again.split_b, again.twin)) == found

    shutil.copytree(extra, tmp_path / "test")
    with pytest.raises(SystemExit, match="error: extra dataset folders .* 'test' repeats"):
        main(["--data", str(tiny_dataset), "--extra", str(tmp_path / "test"), "--size", "32", "--out", str(out)])
    with pytest.raises(SystemExit, match="error: dataset directory not found: .*nowhere"):
        main(["--data", str(tiny_dataset), "--extra", str(tmp_path / "nowhere"), "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_dataset), "--min-correlation", "1.5"])
    assert "--min-correlation: must be a number at least 0 and at most 1, got 1.5" in capsys.readouterr().err


def test_twins_files_of_another_kind_are_refused(tmp_path):
    out = tmp_path / "duplicates.csv"
    with pytest.raises(ArtifactError, match="missing file: .*duplicates.json"):
        read_twins(out)
    (tmp_path / "duplicates.json").write_text('{"sources": {}, "size": 64, "max_distance": 8}')
    with pytest.raises(ArtifactError, match="duplicates.json: not a duplicates.json the kit wrote"):
        read_twins(out)
    (tmp_path / "duplicates.json").write_text('{"sources": {}, "size": 64, "max_distance": 8, "min_correlation": 0.75}')
    out.write_text("id_a,split_a,id_b,split_b,distance\na,train,b,test,3\n")  # written before the check
    with pytest.raises(ArtifactError, match="expected columns .*twin.*rerun `python -m solution.duplicates`"):
        read_twins(out)
    out.write_text(",".join(PAIR_COLUMNS) + "\na,train,b,test,3,0.9,1\nc,train,d,test,2,0.9,yes\n")
    with pytest.raises(ArtifactError, match="duplicates.csv:3: twin must be 0 or 1"):
        read_twins(out)


def test_groups_from_other_data_are_refused(tmp_path):
    path = tmp_path / "duplicates_groups.csv"
    pd.DataFrame({"Id": ["a", "x"], "split": ["train", "train"], "group": [0, 0]}).to_csv(path, index=False)
    with pytest.raises(ArtifactError, match="lists train image 'x' that the dataset does not have"):
        read_groups(path, ["a", "b"])
    assert read_groups(path, ["b", "x", "a"]).tolist() == [-1, 0, 0]
