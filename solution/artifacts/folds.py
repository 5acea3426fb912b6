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
from dataclasses import MISSING, asdict, astuple, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from solution.core.classes import CLASS_NAMES
from solution.core.errors import ArtifactError, ConfigError, DatasetError, quote
from solution.core.fileio import atomic_write_csv, atomic_write_json, file_hash, read_json
from solution.core.ids import check_same_ids, positions
from solution.core.registry import Registry
from solution.core.workspace import DUPLICATES_FILE, FOLDS_DIR
from solution.data.layout import Dataset, open_dataset, open_train_only

if TYPE_CHECKING:  # the pixel side (OpenCV, numba): never loaded by the stages that only read these files
    from solution.data.duplicates import Duplicates

FOLDS_CSV, FOLDS_JSON = "folds.csv", "folds.json"
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
class ExtraData:
    """An extra training dataset (train.csv and train/ only, e.g. HPAv18) and the hash of its Ids and labels."""

    dir: str
    labels_hash: str


@dataclass(frozen=True)
class FoldsMeta:
    """``folds.json``: how the folds were made and from what."""

    seed: int
    n_folds: int
    labels_hash: str  # the Ids and labels the folds were made from
    folds_hash: str  # the assignment and the data it splits: every prediction set carries it
    data_dir: str
    n_images: int
    extra: tuple[ExtraData, ...] = ()
    duplicates: str | None = None  # the hash of the duplicate groups file the folds kept together
    extra_conflicts: str | None = None  # of EXTRA_CONFLICTS: what became of extra images whose twin has other labels
    extra_excluded: str | None = None  # the hash of extra_excluded.csv, where extra images sit out some folds

    @property
    def data_key(self) -> str:
        """What the folds hash covers besides the assignment: the labels, every extra dataset's labels and the
        extra images that sit out folds."""
        excluded = [self.extra_excluded] if self.extra_excluded else []
        return "|".join([self.labels_hash, *(e.labels_hash for e in self.extra), *excluded])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: Path) -> FoldsMeta:
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in obj]
        if missing:
            raise ArtifactError(f"{where}: missing key '{missing[0]}'; remake the folds with --force")
        try:
            extra = tuple(ExtraData(**e) for e in obj.get("extra", []))
            return cls(**{**{f.name: obj[f.name] for f in fields(cls) if f.name in obj}, "extra": extra})
        except TypeError as exc:
            raise ArtifactError(
                f"{where}: not a folds.json the kit wrote ({exc}); remake the folds with --force"
            ) from None


ALL_FOLDS = -1  # the fold of an Excluded that sits out every fold
EXCLUDED_CSV = "extra_excluded.csv"
EXCLUDED_COLUMNS = ("extra", "Id", "fold", "reason")
CONFLICT, LEAK = "its twin in train.csv carries other labels", "twin of a validation image of the fold"


@dataclass(frozen=True)
class Excluded:
    """An extra image (``id`` of the dataset folder named ``extra``) that does not train ``fold`` (or any)."""

    extra: str
    id: str
    fold: int
    reason: str


@dataclass(frozen=True)
class Folds:
    """The fold of every training Id (``folds.csv``), what made them (``folds.json``), and where they were read."""

    ids: list[str]
    fold: np.ndarray  # (N,) int, fold index of each Id
    meta: FoldsMeta
    folds_dir: Path = FOLDS_DIR
    extra_excluded: tuple[Excluded, ...] = ()  # extra images that sit out folds (extra_excluded.csv)

    n_folds = property(lambda self: self.meta.n_folds)
    hash = property(lambda self: self.meta.folds_hash)  # what every prediction set must carry
    labels_hash = property(lambda self: self.meta.labels_hash)
    data_dir = property(lambda self: Path(self.meta.data_dir))
    csv = property(lambda self: self.folds_dir / FOLDS_CSV)  # named in messages: the folder the user passed
    extra = property(lambda self: self.meta.extra)  # on the training side of every fold, never validated

    def ids_of(self, k: int) -> list[str]:
        """The validation Ids of fold ``k``, in folds.csv order."""
        return [i for i, f in zip(self.ids, self.fold) if f == k]

    def split(self, train_ids: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``train_ids`` of fold ``k``'s training and validation images."""
        check_same_ids(self.ids, train_ids, str(self.csv), "train.csv")
        f = self.fold[positions(self.ids, train_ids, str(self.csv))]
        return np.flatnonzero(f != k), np.flatnonzero(f == k)

    def extra_rows(self, k: int, extras: Sequence[Dataset], first: int) -> np.ndarray:
        """Positions of the extra images that may train fold ``k``, among training images stacked as ``first``
        competition images, then each of ``extras`` (the datasets of ``self.extra``, in order) whole.

        An extra image sits out fold k when it is a twin of one of fold k's validation images (it would leak
        them), and every fold when its twin in train.csv carries other labels and the folds drop conflicts.
        """
        rows, offset = [], first
        for entry, dataset in zip(self.extra, extras):
            name = Path(entry.dir).name
            skip = {e.id for e in self.extra_excluded if e.extra == name and e.fold in (ALL_FOLDS, k)}
            rows.append(offset + np.flatnonzero([image_id not in skip for image_id in dataset.train_ids]))
            offset += len(dataset.train_ids)
        return np.concatenate(rows) if rows else np.empty(0, np.int64)


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


def _excluded_table(excluded: Sequence[Excluded]) -> pd.DataFrame:
    rows = sorted((e.extra, e.id, e.fold, e.reason) for e in excluded)
    return pd.DataFrame(rows, columns=list(EXCLUDED_COLUMNS))


def excluded_hash(excluded: Sequence[Excluded]) -> str | None:
    """The hash ``folds.json`` records of the extra images that sit out folds; None when none does."""
    if not excluded:
        return None
    return hashlib.sha256(_excluded_table(excluded).to_csv(index=False).encode()).hexdigest()[:16]


def write_folds(
    folds_dir: Path,
    ids: list[str],
    fold: np.ndarray,
    meta: FoldsMeta,
    groups: np.ndarray | None = None,
    excluded: Sequence[Excluded] = (),
) -> Folds:
    """Write folds.csv (with a ``group`` column when duplicates were grouped), extra_excluded.csv (where extra
    images sit out folds) and folds.json (``meta`` with the folds hash of this assignment); returns what was
    written."""
    meta = replace(meta, extra_excluded=excluded_hash(excluded))
    meta = replace(meta, folds_hash=folds_hash(ids, fold, meta.data_key))
    table = pd.DataFrame({"Id": ids, "fold": fold.astype(int)})
    if groups is not None:
        table["group"] = groups
    atomic_write_csv(folds_dir / FOLDS_CSV, table)
    if excluded:
        atomic_write_csv(folds_dir / EXCLUDED_CSV, _excluded_table(excluded))
    else:
        (folds_dir / EXCLUDED_CSV).unlink(missing_ok=True)
    atomic_write_json(folds_dir / FOLDS_JSON, meta.to_json())
    return Folds(list(ids), fold.astype(int), meta, folds_dir, tuple(sorted(excluded, key=astuple)))


def _read_excluded(folds_dir: Path, meta: FoldsMeta) -> tuple[Excluded, ...]:
    """The extra images that sit out folds, refused when the file is not the one folds.json records."""
    if meta.extra_excluded is None:
        return ()
    path = folds_dir / EXCLUDED_CSV
    try:
        df = pd.read_csv(path, dtype={"extra": str, "Id": str, "reason": str}, keep_default_na=False)
        excluded = tuple(Excluded(e, i, int(f), r) for e, i, f, r in df[list(EXCLUDED_COLUMNS)].itertuples(index=False))
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as exc:
        raise ArtifactError(f"{path}: missing or unreadable ({exc}); remake the folds with --force") from None
    if excluded_hash(excluded) != meta.extra_excluded:
        raise ArtifactError(f"{path} does not match {folds_dir / FOLDS_JSON} (edited by hand?): remake with --force")
    return excluded


def read_folds(folds_dir: Path | str) -> Folds:
    folds_dir = Path(folds_dir)
    csv_path, json_path = folds_dir / FOLDS_CSV, folds_dir / FOLDS_JSON
    if not csv_path.is_file() or not json_path.is_file():
        raise ArtifactError(
            f"no folds in {folds_dir}/ (need folds.csv and folds.json): run `python -m solution.folds --data DIR` first"
        )
    meta = FoldsMeta.from_json(read_json(json_path), json_path)
    try:  # Ids such as NA, None or null are Ids, not missing values
        df = pd.read_csv(csv_path, dtype={"Id": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{csv_path}: not a readable Id,fold CSV ({exc}); remake it with --force") from exc
    if list(df.columns[:2]) != ["Id", "fold"]:
        raise ArtifactError(f"{csv_path}: expected columns Id,fold, got {','.join(df.columns)}")
    excluded = _read_excluded(folds_dir, meta)
    folds = Folds(df["Id"].tolist(), df["fold"].to_numpy(int), meta, folds_dir, excluded)
    if folds_hash(folds.ids, folds.fold, meta.data_key) != folds.hash:
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
            f"{folds.folds_dir / FOLDS_JSON} was made from other data ({folds.data_dir}, hash {folds.labels_hash}) "
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


def extra_entries(dataset: Dataset, extra_dirs: list[Path]) -> tuple[ExtraData, ...]:
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
                    f"extra dataset {root}: {len(shared)} Id(s) also in {where} (e.g. {quote(shared[0])}); an extra "
                    f"image must not be a training or test image of the dataset or of another extra dataset: "
                    f"drop those rows from {root}/train.csv"
                )
        taken[f"{root}/train.csv"] = set(extra.train_ids)
        entries.append(ExtraData(dir=str(root.resolve()), labels_hash=labels_hash(extra.train_ids, extra.train_labels)))
    return tuple(entries)


def open_extras(folds: Folds) -> list[Dataset]:
    """The extra training datasets of the folds, each checked to be the one the folds were made with."""
    datasets = []
    for entry in folds.extra:
        extra = open_train_only(entry.dir)
        if labels_hash(extra.train_ids, extra.train_labels) != entry.labels_hash:
            raise ArtifactError(
                f"extra dataset {entry.dir} changed since {folds.folds_dir / FOLDS_JSON} was made: remake the folds "
                f"with `python -m solution.folds --data DIR --extra ... --force` and retrain"
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
    other = {k: v for k, v in asked.items() if v is not None and getattr(existing.meta, k) != v}
    if other:
        settings = ", ".join(f"{k} {getattr(existing.meta, k)} (asked: {v})" for k, v in other.items())
        raise ConfigError(
            f"{folds_dir}/ holds folds with {settings}: pass --force to remake them "
            f"(predictions made with the old folds are then refused and must be retrained)"
        )


DEFAULT_MAX_FOLD_IMBALANCE = 0.10
FOLD_GAP_ALLOWED = 10  # images between folds never refused: the stratifier alone leaves 11 to 15 of 40 in 3 folds


def check_balance(fold: np.ndarray, groups: np.ndarray | None, ids: Sequence[str], max_imbalance: float) -> None:
    """Log the fold sizes; refuse folds that keep duplicate groups whole and whose largest exceeds the smallest by
    more than ``max_imbalance`` (and by more than ``FOLD_GAP_ALLOWED`` images, which stratifying a small set
    needs), naming the largest group. Without groups the spread is the splitter's own: a warning.

    Groups stay whole and the splitter balances groups, not images, so one huge group (pairs chained by
    chance) unbalances the folds; every fold is then trained and scored on a different share of the data.
    """
    sizes = np.bincount(fold)
    small, large = int(sizes.min()), int(sizes.max())
    above = f"the largest {100 * (large / small - 1):.1f} % above the smallest"
    log.info(f"fold sizes: {' '.join(map(str, sizes))} ({above})")
    if large - small <= max(FOLD_GAP_ALLOWED, max_imbalance * small):
        return
    if groups is None or not (groups >= 0).any():  # the splitter's own spread on few or skewed labels: no fault
        log.warning(f"fold sizes {' '.join(map(str, sizes))}: {above}, without duplicate groups (few images?)")
        return
    counts = np.bincount(groups[groups >= 0])
    first = ids[int(np.flatnonzero(groups == counts.argmax())[0])]
    cause = (
        f"the largest duplicate group holds {int(counts.max())} training images (group {int(counts.argmax())}, "
        f"e.g. {first}), and each group stays in one fold (the splitter balances groups, not images): where "
        f"one group is that large, check its pairs in {DUPLICATES_FILE} and regroup with `python -m "
        "solution.duplicates` (a lower --max-distance or a higher --min-correlation); where the data are few"
    )
    raise ConfigError(
        f"fold sizes {' '.join(map(str, sizes))}: {above}, more than --max-fold-imbalance {max_imbalance:g}; "
        f"{cause}, allow more with --max-fold-imbalance"
    )


EXTRA_CONFLICTS: Registry[bool] = Registry("--extra-conflicts", {"drop": True, "keep": False})  # drop them?
DEFAULT_EXTRA_CONFLICTS = "drop"


def _extra_twins(twins: Twins, entry: ExtraData, pairs_path: Path) -> pd.DataFrame:
    """The twins in train.csv of one extra dataset's images, refused when the pairs file did not hash it."""
    name = Path(entry.dir).name
    if twins.meta.sources.get(name) != entry.dir:
        raise ArtifactError(
            f"{pairs_path} was made without the extra dataset {entry.dir}, so its twins of training images are "
            f"unknown: rerun `python -m solution.duplicates --data DIR --extra {entry.dir} ...`, then the folds"
        )
    return twins.between(name, ["train"])


def extra_exclusions(
    folds_dir: Path, dataset: Dataset, fold: np.ndarray, extra: Sequence[ExtraData], conflicts: str
) -> list[Excluded]:
    """The extra images that sit out folds, from the twins in ``folds_dir``'s pairs file: each twin of a fold's
    validation image sits out that fold, and with ``conflicts`` "drop" each whose twin in train.csv carries
    other labels sits out every fold (as the competition's winner dropped them). Nothing without a pairs file."""
    pairs_path = folds_dir / DUPLICATES_FILE
    if not extra or not pairs_path.is_file():
        if extra:
            log.info(f"no {pairs_path}: extra images are not checked against the training images' twins")
        return []
    twins, drop = read_twins(pairs_path), EXTRA_CONFLICTS[conflicts]
    train_at = {image_id: i for i, image_id in enumerate(dataset.train_ids)}
    excluded: list[Excluded] = []
    for entry in extra:
        pairs, ds = _extra_twins(twins, entry, pairs_path), open_train_only(entry.dir)
        unknown = sorted(set(pairs["twin"]) - train_at.keys()) + sorted(set(pairs["Id"]) - set(ds.train_ids))
        if unknown:
            raise ArtifactError(f"{pairs_path} names image {unknown[0]!r}, which the datasets lack: rerun duplicates")
        extra_at = {image_id: i for i, image_id in enumerate(ds.train_ids)}
        own = ds.train_labels[[extra_at[i] for i in pairs["Id"]]]
        other = dataset.train_labels[[train_at[i] for i in pairs["twin"]]]
        conflict = (own != other).any(axis=1) if len(pairs) else np.zeros(0, bool)
        dropped = set(pairs["Id"][conflict]) if drop else set()
        leaks = {(i, int(fold[train_at[t]])) for i, t in zip(pairs["Id"], pairs["twin"]) if i not in dropped}
        excluded += [Excluded(ds.root.name, i, ALL_FOLDS, CONFLICT) for i in sorted(dropped)]
        excluded += [Excluded(ds.root.name, i, k, LEAK) for i, k in sorted(leaks)]
        log.info(
            f"extra data {entry.dir}: {len(set(pairs['Id'][conflict]))} of {len(ds.train_ids)} images have a twin in "
            f"train.csv with other labels ({'dropped from training' if drop else 'kept'}: --extra-conflicts "
            f"{conflicts}); {len({i for i, _ in leaks})} are twins of validation images and sit out those folds"
        )
    return excluded


def _kept(folds_dir: Path, dataset: Dataset, data_dir: Path, asked: dict[str, Any]) -> Folds:
    """The existing folds, refused when made from other data or settings, or when the extra images that sit
    out folds would now differ (new duplicates, say)."""
    existing = read_folds(folds_dir)
    check_folds_match(existing, dataset.train_ids, dataset.train_labels, data_dir)
    _check_kept(existing, asked, folds_dir)
    conflicts = existing.meta.extra_conflicts or DEFAULT_EXTRA_CONFLICTS
    now = excluded_hash(extra_exclusions(folds_dir, dataset, existing.fold, existing.meta.extra, conflicts))
    if now != existing.meta.extra_excluded:
        raise ConfigError(
            f"{folds_dir}/ holds folds whose extra images sit out other folds than the duplicates now say: "
            "pass --force to remake them (predictions made with the old folds are then refused)"
        )
    log.info(f"{folds_dir}/ already holds folds for {data_dir} (folds hash {existing.hash}); keeping them")
    return existing


def ensure_folds(
    data_dir: Path,
    folds_dir: Path,
    n_folds: int | None,
    seed: int | None,
    force: bool,
    extra_dirs: list[Path] | None = None,
    extra_conflicts: str | None = None,
    max_imbalance: float = DEFAULT_MAX_FOLD_IMBALANCE,
) -> Folds:
    """Make folds, or keep existing ones made from the same data; refuse ones made from other data.

    ``n_folds``, ``seed``, ``extra_dirs`` and ``extra_conflicts`` left as None keep what exists (or take the
    defaults); given, they must match the existing folds unless ``force`` remakes them. Duplicate groups
    (``folds/duplicates_groups.csv``) keep each group in one fold; folds made before the groups changed are
    refused, and new folds more unbalanced than ``max_imbalance`` too (``check_balance``). Extra images sit
    out folds by ``extra_exclusions``.
    """
    dataset = open_dataset(data_dir)
    groups, groups_hash = _groups(folds_dir, dataset)
    extra = None if extra_dirs is None else extra_entries(dataset, extra_dirs)
    if extra_conflicts is not None:
        EXTRA_CONFLICTS.check(extra_conflicts)
    if (folds_dir / FOLDS_JSON).is_file() and not force:
        asked = {"n_folds": n_folds, "seed": seed, "extra": extra, "duplicates": groups_hash}
        return _kept(folds_dir, dataset, data_dir, {**asked, "extra_conflicts": extra_conflicts})
    n_folds = DEFAULT_N_FOLDS if n_folds is None else n_folds
    seed = DEFAULT_SEED if seed is None else seed
    fold = make_folds(dataset.train_labels, n_folds, seed, groups)
    log.info(prevalence_table(dataset.train_labels, fold))
    check_balance(fold, groups, dataset.train_ids, max_imbalance)
    conflicts = extra_conflicts or DEFAULT_EXTRA_CONFLICTS
    excluded = extra_exclusions(folds_dir, dataset, fold, extra or (), conflicts)
    meta = FoldsMeta(
        seed=seed,
        n_folds=n_folds,
        labels_hash=labels_hash(dataset.train_ids, dataset.train_labels),
        folds_hash="",  # write_folds sets it from the assignment
        data_dir=str(data_dir.resolve()),
        n_images=len(fold),
        extra=extra or (),
        duplicates=groups_hash,
        extra_conflicts=conflicts if extra else None,
    )
    folds = write_folds(folds_dir, dataset.train_ids, fold, meta, groups, excluded)
    log.info(f"wrote {folds_dir}/folds.csv and folds.json ({n_folds} folds, seed {seed}, folds hash {folds.hash})")
    return folds


# ------------------------------------------------------ near-duplicates (``python -m solution.duplicates``)

PAIR_COLUMNS = ("id_a", "split_a", "id_b", "split_b", "distance", "correlation", "twin")
GROUP_COLUMNS = ("Id", "split", "group")


def groups_path(pairs_path: Path | str) -> Path:
    """The groups file written beside a pairs file: ``duplicates.csv`` -> ``duplicates_groups.csv``."""
    pairs_path = Path(pairs_path)
    return pairs_path.with_name(f"{pairs_path.stem}_groups.csv")


@dataclass(frozen=True)
class DuplicatesMeta:
    """``duplicates.json``, beside the pairs file: what was hashed (each split name's dataset folder) and how."""

    sources: dict[str, str]  # split name (train, test, an extra dataset's folder name) -> its dataset folder
    size: int
    max_distance: int
    min_correlation: float

    @staticmethod
    def path(pairs_path: Path | str) -> Path:
        return Path(pairs_path).with_suffix(".json")

    @classmethod
    def read(cls, pairs_path: Path | str) -> DuplicatesMeta:
        path = cls.path(pairs_path)
        if not path.is_file():
            raise ArtifactError(f"missing file: {path} (made by `python -m solution.duplicates --data DIR`)")
        try:
            return cls(**read_json(path))
        except TypeError as exc:
            raise ArtifactError(
                f"{path}: not a duplicates.json the kit wrote ({exc}); rerun solution.duplicates"
            ) from None


@dataclass(frozen=True)
class Twins:
    """The twin pairs of a pairs file (those that passed the stain check), one row per pair, and its record."""

    pairs: pd.DataFrame  # columns id_a, split_a, id_b, split_b, distance
    meta: DuplicatesMeta

    def between(self, split: str, others: Sequence[str]) -> pd.DataFrame:
        """Twin pairs of an image of ``split`` with one of a split in ``others``, as columns ``Id`` (of
        ``split``), ``split``, ``twin`` (its twin's Id), ``twin_split``, ``distance``; either order in the file."""
        p = self.pairs
        forward = p[(p.split_a == split) & p.split_b.isin(others)]
        backward = p[(p.split_b == split) & p.split_a.isin(others)]
        names = ("Id", "split", "twin", "twin_split", "distance")
        return pd.concat(
            [
                forward.set_axis(names, axis=1),
                backward[["id_b", "split_b", "id_a", "split_a", "distance"]].set_axis(names, axis=1),
            ],
            ignore_index=True,
        )

    def extra_labels(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Per extra dataset the twins were found among (by split name): its Ids and labels, from its folder."""
        extras = {name: open_train_only(d) for name, d in self.meta.sources.items() if name not in ("train", "test")}
        return {name: (ds.train_ids, ds.train_labels) for name, ds in extras.items()}


def read_twins(pairs_path: Path | str) -> Twins:
    """The twin pairs of a pairs file and its ``duplicates.json``; refused when either is not the kit's."""
    pairs_path = Path(pairs_path)
    meta = DuplicatesMeta.read(pairs_path)
    try:
        df = pd.read_csv(
            pairs_path, dtype={"id_a": str, "id_b": str, "split_a": str, "split_b": str}, keep_default_na=False
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, FileNotFoundError) as exc:
        raise ArtifactError(f"{pairs_path}: not a readable pairs file ({exc}); rerun solution.duplicates") from None
    if tuple(df.columns) != PAIR_COLUMNS:
        raise ArtifactError(
            f"{pairs_path}: expected columns {','.join(PAIR_COLUMNS)}, got {','.join(df.columns)}; "
            "rerun `python -m solution.duplicates`"
        )
    twin, distance = (pd.to_numeric(df[c], errors="coerce") for c in ("twin", "distance"))
    bad = ~twin.isin([0, 1]) | ~(distance >= 0) | (distance % 1 != 0)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 2
        raise ArtifactError(f"{pairs_path}:{line}: twin must be 0 or 1 and distance a count of bits")
    twins = df[twin == 1].drop(columns=["correlation", "twin"]).reset_index(drop=True)
    return Twins(twins.astype({"distance": int}), meta)


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


def write_duplicates(out: Path, found: Duplicates, meta: DuplicatesMeta) -> Path:
    """The pairs file ``out``, the groups file beside it (the images in a group, by group) and ``meta`` as
    ``duplicates.json``; returns the groups file's path."""
    ids, splits, a, b = found.images.ids, found.images.splits, found.a, found.b
    columns = (ids[a], splits[a], ids[b], splits[b], found.distance, found.correlation.round(4), found.twin.astype(int))
    atomic_write_csv(out, pd.DataFrame(dict(zip(PAIR_COLUMNS, columns))))
    member = np.flatnonzero(found.groups >= 0)
    member = member[np.argsort(found.groups[member], kind="stable")]
    table = pd.DataFrame(dict(zip(GROUP_COLUMNS, (ids[member], splits[member], found.groups[member]))))
    atomic_write_csv(groups_path(out), table)
    atomic_write_json(DuplicatesMeta.path(out), asdict(meta))
    return groups_path(out)
