"""Folds: multilabel-stratified assignment, its hashes, and folds.csv / folds.json I/O.

``folds.json`` records the seed, the number of folds, a hash of the Ids and
labels the folds were made from (``labels_hash``, to refuse folds made from
other data) and a hash of the assignment itself (``folds_hash``, carried by
every prediction set and checked by every reader).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.core.classes import CLASS_NAMES
from solution.core.errors import ArtifactError, ConfigError, DatasetError
from solution.core.fileio import atomic_write_csv, atomic_write_json, file_hash, read_json
from solution.core.ids import check_same_ids, positions
from solution.core.workspace import DUPLICATES_FILE
from solution.data.layout import Dataset, open_dataset, open_train_only

log = logging.getLogger(__spec__.name)


def labels_hash(ids: list[str], labels: np.ndarray) -> str:
    """A hash of the (Id, label set) pairs, independent of row order."""
    rows = sorted(f"{i},{' '.join(map(str, np.flatnonzero(row)))}" for i, row in zip(ids, labels))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def folds_hash(ids: list[str], fold: np.ndarray, data_hash: str) -> str:
    """A hash of the fold assignment and the data it splits: predictions carry it to prove their folds."""
    rows = sorted(f"{i},{int(f)}" for i, f in zip(ids, fold))
    return hashlib.sha256("\n".join([data_hash, *rows]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Folds:
    ids: list[str]
    fold: np.ndarray  # (N,) int, fold index of each Id
    meta: dict[str, Any]  # folds.json: seed, n_folds, labels_hash, folds_hash, data_dir, ...

    @property
    def n_folds(self) -> int:
        return int(self.meta["n_folds"])

    @property
    def hash(self) -> str:
        """The folds hash (assignment and data) that every prediction set must carry."""
        return str(self.meta["folds_hash"])

    @property
    def labels_hash(self) -> str:
        """The hash of the Ids and labels the folds were made from."""
        return str(self.meta["labels_hash"])

    @property
    def data_dir(self) -> Path:
        return Path(self.meta["data_dir"])

    @property
    def extra(self) -> list[dict[str, Any]]:
        """The extra training datasets: they join the training side of every fold, never the validation side."""
        return list(self.meta.get("extra", []))

    @property
    def data_key(self) -> str:
        """What the folds hash covers besides the assignment: the labels and every extra dataset's labels."""
        return "|".join([self.labels_hash, *(e["labels_hash"] for e in self.extra)])

    def ids_of(self, k: int) -> list[str]:
        """The validation Ids of fold ``k``, in folds.csv order."""
        return [i for i, f in zip(self.ids, self.fold) if f == k]

    def split(self, train_ids: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``train_ids`` of fold ``k``'s training and validation images."""
        check_same_ids(self.ids, train_ids, "folds/folds.csv", "train.csv")
        f = self.fold[positions(self.ids, train_ids, "folds/folds.csv")]
        return np.flatnonzero(f != k), np.flatnonzero(f == k)


def make_folds(labels: np.ndarray, n_folds: int = 5, seed: int = 42, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold of each image from iterative-stratification's scikit-learn-compatible splitter, keeping each group
    of duplicates in one fold.

    ``groups`` holds a group number per image; an image with a negative number (no twin, as
    ``solution.data.duplicates`` marks it) is a group of its own, and without groups every image is.
    Each group is one row for the splitter, labelled with the union of its members' labels.
    """
    groups = np.full(len(labels), -1) if groups is None else np.asarray(groups)
    if groups.shape != (len(labels),):
        raise ValueError(f"need one group per image: {len(labels)} images, groups of shape {groups.shape}")
    key = np.where(groups < 0, -1 - np.arange(len(groups)), groups)
    _, first, member_of = np.unique(key, return_index=True, return_inverse=True)
    member_of = np.argsort(np.argsort(first))[member_of]  # groups in order of their first image
    n_groups = len(first)
    if n_folds < 2:
        raise ConfigError(f"--n-folds: need at least 2 folds, got {n_folds}")
    if n_groups < n_folds:
        raise ConfigError(f"--n-folds: cannot make {n_folds} folds from {n_groups} images (groups of duplicates)")
    group_labels = np.zeros((n_groups, labels.shape[1]), dtype=np.uint8)
    np.maximum.at(group_labels, member_of, np.asarray(labels, dtype=np.uint8))
    group_fold = np.full(n_groups, -1, dtype=int)
    # Imported here: it brings scikit-learn and SciPy (2 s), which no stage but this one needs.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(n_groups), group_labels)):
        group_fold[val_idx] = k
    return group_fold[member_of]


def prevalence_table(labels: np.ndarray, fold: np.ndarray) -> str:
    """Per-class prevalence (%) overall and in each fold, one line per class."""
    n_folds = fold.max() + 1
    head = f"{'class':<34}{'all':>7}" + "".join(f"{f'fold{k}':>7}" for k in range(n_folds))
    lines = [head]
    for c, name in enumerate(CLASS_NAMES):
        cells = [labels[:, c].mean()] + [labels[fold == k, c].mean() for k in range(n_folds)]
        lines.append(f"{c:>2} {name:<31}" + "".join(f"{100 * v:>6.2f}%" for v in cells))
    sizes = "".join(f"{int((fold == k).sum()):>7}" for k in range(n_folds))
    lines.append(f"{'images':<34}{len(fold):>7}{sizes}")
    return "\n".join(lines)


def write_folds(
    folds_dir: Path | str, ids: list[str], fold: np.ndarray, meta: dict[str, Any], groups: np.ndarray | None = None
) -> Folds:
    """Write folds.csv (with a ``group`` column when duplicates were grouped) and folds.json (``meta`` gains the
    folds hash); returns what was written."""
    folds_dir = Path(folds_dir)
    folds = Folds(ids=list(ids), fold=fold.astype(int), meta=meta)
    meta = {**meta, "folds_hash": folds_hash(ids, fold, folds.data_key)}
    table = pd.DataFrame({"Id": ids, "fold": fold.astype(int)})
    if groups is not None:
        table["group"] = groups
    atomic_write_csv(folds_dir / "folds.csv", table)
    atomic_write_json(folds_dir / "folds.json", meta)
    return Folds(ids=list(ids), fold=fold.astype(int), meta=meta)


def read_folds(folds_dir: Path | str) -> Folds:
    folds_dir = Path(folds_dir)
    csv_path, json_path = folds_dir / "folds.csv", folds_dir / "folds.json"
    if not csv_path.is_file() or not json_path.is_file():
        raise ArtifactError(
            f"no folds in {folds_dir}/ (need folds.csv and folds.json): run `python -m solution.folds --data DIR` first"
        )
    meta = read_json(json_path)
    try:  # Ids such as NA, None or null are Ids, not missing values
        df = pd.read_csv(csv_path, dtype={"Id": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{csv_path}: not a readable Id,fold CSV ({exc}); remake it with --force") from exc
    if list(df.columns[:2]) != ["Id", "fold"]:
        raise ArtifactError(f"{csv_path}: expected columns Id,fold, got {','.join(df.columns)}")
    for key in ("n_folds", "labels_hash", "folds_hash", "data_dir", "seed"):
        if key not in meta:
            raise ArtifactError(f"{json_path}: missing key '{key}'")
    folds = Folds(ids=df["Id"].tolist(), fold=df["fold"].to_numpy(int), meta=meta)
    if folds_hash(folds.ids, folds.fold, folds.data_key) != folds.hash:
        raise ArtifactError(
            f"{csv_path} does not match {json_path} (edited by hand?): "
            "remake both with `python -m solution.folds --data DIR --force`"
        )
    return folds


def check_folds_match(folds: Folds, ids: list[str], labels: np.ndarray, data_dir: Path | str) -> None:
    """Refuse folds made from other Ids or labels than the dataset at ``data_dir``, saying how to remake them."""
    current = labels_hash(ids, labels)
    if current != folds.labels_hash:
        raise ArtifactError(
            f"folds/folds.json was made from other data ({folds.data_dir}, hash {folds.labels_hash}) "
            f"than {data_dir} (hash {current}). "
            f"Remake them with `python -m solution.folds --data {data_dir} --force` "
            f"(predictions made with the old folds are then refused and must be retrained)"
        )


def open_matching_dataset(folds: Folds, data_dir: Path | str | None = None) -> Dataset:
    """The dataset the folds were made from (or ``data_dir``), checked against the folds."""
    data_dir = Path(data_dir) if data_dir is not None else folds.data_dir
    dataset = open_dataset(data_dir)
    check_folds_match(folds, dataset.train_ids, dataset.train_labels, data_dir)
    return dataset


DEFAULT_N_FOLDS, DEFAULT_SEED = 5, 42


def extra_entries(dataset: Dataset, extra_dirs: list[Path]) -> list[dict[str, Any]]:
    """What folds.json records of each extra training dataset (train.csv and train/ only, e.g. HPAv18).

    An extra dataset that shares an Id with the dataset's training or test images (or with an earlier extra
    dataset) is refused: that image would train every fold, the ones that validate it included.
    """
    taken = {
        f"{dataset.root}/train.csv": set(dataset.train_ids),
        f"{dataset.root}/sample_submission.csv": set(dataset.test_ids),
    }
    entries = []
    for root in map(Path, extra_dirs):
        extra = open_train_only(root)
        for where, ids in taken.items():
            shared = sorted(ids.intersection(extra.train_ids))
            if shared:
                raise DatasetError(
                    f"extra dataset {root}: {len(shared)} Id(s) also in {where} (e.g. {shared[0]!r}); an extra image "
                    f"must not be a training or test image of the dataset or of another extra dataset: "
                    f"drop those rows from {root}/train.csv"
                )
        taken[f"{root}/train.csv"] = set(extra.train_ids)
        entries.append({"dir": str(root.resolve()), "labels_hash": labels_hash(extra.train_ids, extra.train_labels)})
    return entries


def open_extras(folds: Folds) -> list[Dataset]:
    """The extra training datasets of the folds, each checked to be the one the folds were made with."""
    datasets = []
    for entry in folds.extra:
        extra = open_train_only(entry["dir"])
        if labels_hash(extra.train_ids, extra.train_labels) != entry["labels_hash"]:
            raise ArtifactError(
                f"extra dataset {entry['dir']} changed since folds/folds.json was made: remake the folds with "
                f"`python -m solution.folds --data DIR --extra ... --force` and retrain"
            )
        datasets.append(extra)
    return datasets


def _groups(folds_dir: Path, dataset: Dataset) -> tuple[np.ndarray | None, str | None]:
    """The duplicate groups of the training images and the hash of their file, where duplicates were computed."""
    path = groups_path(folds_dir / DUPLICATES_FILE)
    if not path.is_file():
        return None, None
    groups = read_groups(path, dataset.train_ids)
    sizes = np.unique(groups[groups >= 0], return_counts=True)[1]
    log.info(
        f"{path}: {len(sizes)} groups of duplicates hold {int(sizes.sum())} training images; each stays in one fold"
    )
    return groups, file_hash(path)


def _check_kept(existing: Folds, asked: dict[str, Any], folds_dir: Path) -> None:
    """Refuse to keep folds whose settings, extra data or duplicate groups differ from what is asked now."""
    other = {k: v for k, v in asked.items() if v is not None and existing.meta.get(k) != v}
    if other:
        settings = ", ".join(f"{k} {existing.meta.get(k)} (asked: {v})" for k, v in other.items())
        raise ConfigError(
            f"{folds_dir}/ holds folds with {settings}: pass --force to remake them "
            f"(predictions made with the old folds are then refused and must be retrained)"
        )


def ensure_folds(
    data_dir: Path,
    folds_dir: Path,
    n_folds: int | None,
    seed: int | None,
    force: bool,
    extra_dirs: list[Path] | None = None,
) -> Folds:
    """Make folds, or keep existing ones made from the same data; refuse ones made from other data.

    ``n_folds``, ``seed`` and ``extra_dirs`` left as None keep what exists (or take the defaults);
    given, they must match the existing folds unless ``force`` remakes them. Duplicate groups
    (``folds/duplicates_groups.csv``) keep each group in one fold; folds made before the groups
    changed are refused.
    """
    dataset = open_dataset(data_dir)
    groups, groups_hash = _groups(folds_dir, dataset)
    extra = None if extra_dirs is None else extra_entries(dataset, extra_dirs)
    if (folds_dir / "folds.json").is_file() and not force:
        existing = read_folds(folds_dir)
        check_folds_match(existing, dataset.train_ids, dataset.train_labels, data_dir)
        _check_kept(existing, {"n_folds": n_folds, "seed": seed, "extra": extra, "duplicates": groups_hash}, folds_dir)
        log.info(f"{folds_dir}/ already holds folds for {data_dir} (folds hash {existing.hash}); keeping them")
        return existing
    n_folds = DEFAULT_N_FOLDS if n_folds is None else n_folds
    seed = DEFAULT_SEED if seed is None else seed
    fold = make_folds(dataset.train_labels, n_folds, seed, groups)
    meta = {
        "seed": seed,
        "n_folds": n_folds,
        "labels_hash": labels_hash(dataset.train_ids, dataset.train_labels),
        "data_dir": str(data_dir.resolve()),
        "n_images": len(fold),
        "extra": extra or [],
        "duplicates": groups_hash,
    }
    folds = write_folds(folds_dir, dataset.train_ids, fold, meta, groups)
    log.info(prevalence_table(dataset.train_labels, fold))
    log.info(f"wrote {folds_dir}/folds.csv and folds.json ({n_folds} folds, seed {seed}, folds hash {folds.hash})")
    return folds


# ------------------------------------------------------ near-duplicates (``python -m solution.duplicates``)

PAIR_COLUMNS = ("id_a", "split_a", "id_b", "split_b", "distance")
GROUP_COLUMNS = ("Id", "split", "group")


def groups_path(pairs_path: Path | str) -> Path:
    """The groups file written beside a pairs file: ``duplicates.csv`` -> ``duplicates_groups.csv``."""
    pairs_path = Path(pairs_path)
    return pairs_path.with_name(f"{pairs_path.stem}_groups.csv")


def read_groups(path: Path | str, ids: Sequence[str], split: str = "train") -> np.ndarray:
    """Group number of each of ``ids`` (images of ``split``) from a groups file; -1 for images without a twin.

    A listed image of ``split`` that is not among ``ids`` means the file was made from other data.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path} (made by `python -m solution.duplicates --data DIR`)")
    df = pd.read_csv(path, dtype={"Id": str, "split": str}, keep_default_na=False)
    if tuple(df.columns) != GROUP_COLUMNS:
        raise ArtifactError(f"{path}: expected columns {','.join(GROUP_COLUMNS)}, got {','.join(df.columns)}")
    df = df[df["split"] == split]
    position = {image_id: i for i, image_id in enumerate(ids)}
    unknown = sorted(set(df["Id"]) - position.keys())
    if unknown:
        raise ArtifactError(
            f"{path}: lists {split} image {unknown[0]!r} that the dataset does not have; "
            "it was made from other data: rerun `python -m solution.duplicates`"
        )
    groups = np.full(len(ids), -1, dtype=np.int64)
    groups[[position[i] for i in df["Id"]]] = df["group"].to_numpy(np.int64)
    return groups


def write_duplicates(
    out: Path,
    ids: np.ndarray,
    splits: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    distance: np.ndarray,
    groups: np.ndarray,
) -> Path:
    """The pairs file ``out`` (positions ``a``, ``b`` into ``ids``/``splits``) and the groups file beside it, whose
    rows are the images with a twin, by group; returns the groups file's path."""
    atomic_write_csv(out, pd.DataFrame(dict(zip(PAIR_COLUMNS, (ids[a], splits[a], ids[b], splits[b], distance)))))
    member = np.flatnonzero(groups >= 0)
    member = member[np.argsort(groups[member], kind="stable")]
    table = pd.DataFrame(dict(zip(GROUP_COLUMNS, (ids[member], splits[member], groups[member]))))
    atomic_write_csv(groups_path(out), table)
    return groups_path(out)
