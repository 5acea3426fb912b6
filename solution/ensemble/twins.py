"""Twins turned into score: test images that take a labelled twin's labels, and test twins that agree.

A twin is a pair of ``python -m solution.duplicates`` that passed its stain check (``folds/duplicates.csv``).

- ``transfer`` (``--twins transfer``): a test image with a labelled twin (a training or extra image) takes
  the labels of its nearest twin (the smallest hash distance; where several tie, the union of their labels),
  as the competition's winner did (+0.03 on its leaderboard); every other row keeps its prediction. The
  honest estimate replays the rule on the OOF rows: a training image takes the labels of its nearest twin on
  the training side of its fold (a training image of another fold, or an extra image), as a test image's twin
  is an image the models trained on; a twin in its own fold is a validation image too, and is left out.
- ``average_test_twins`` (``--average-test-twins``): the test images of one duplicate group get the mean of
  their probabilities before the cut-offs are fitted and applied, so twins get one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.folds import Twins, groups_path, read_groups
from solution.core.errors import ArtifactError
from solution.core.registry import Registry
from solution.scoring.metrics import macro_f1


@dataclass(frozen=True)
class Labelled:
    """The labelled images a twin may be: per split name (``train`` and each extra dataset's folder name), each
    Id's row of labels."""

    rows: Mapping[str, Mapping[str, np.ndarray]]

    @classmethod
    def of(cls, twins: Twins, train_ids: Sequence[str], train_labels: np.ndarray) -> Labelled:
        """The training images, and every extra dataset the twins were found among (read from its folder)."""
        extras = {name: dict(zip(ids, labels)) for name, (ids, labels) in twins.extra_labels().items()}
        return cls({"train": dict(zip(train_ids, train_labels)), **extras})

    def of_twins(self, pairs: pd.DataFrame, where: Path) -> np.ndarray:
        """(P, C) labels of each pair's twin (columns ``twin``, ``twin_split`` of ``Twins.between``)."""
        missing = [(t, s) for t, s in zip(pairs["twin"], pairs["twin_split"]) if t not in self.rows[s]]
        if missing:
            raise ArtifactError(
                f"{where} names {missing[0][1]} image {missing[0][0]!r}, which its dataset lacks: it was made from "
                "other data; rerun `python -m solution.duplicates`"
            )
        return np.array([self.rows[s][t] for t, s in zip(pairs["twin"], pairs["twin_split"])]).reshape(len(pairs), -1)


def nearest_twin_labels(pairs: pd.DataFrame, twin_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per Id of ``pairs`` (``Twins.between`` rows with their twins' ``twin_labels``): the labels of its nearest
    twin, the union of those at the smallest distance where several tie."""
    nearest: dict[str, tuple[int, np.ndarray]] = {}
    for image_id, distance, labels in zip(pairs["Id"], pairs["distance"], twin_labels):
        best = nearest.get(image_id)
        if best is None or distance < best[0]:
            nearest[image_id] = (int(distance), labels.copy())
        elif distance == best[0]:
            np.maximum(best[1], labels, out=best[1])
    return {image_id: labels for image_id, (_, labels) in nearest.items()}


def _transfer(pred: np.ndarray, ids: Sequence[str], labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """``pred`` with the row of each Id in ``labels`` replaced by its labels."""
    out = pred.copy()
    for i, image_id in enumerate(ids):
        if image_id in labels:
            out[i] = labels[image_id]
    return out


Rule = Callable[[np.ndarray, Sequence[str], Mapping[str, np.ndarray]], np.ndarray]
TWIN_RULES: Registry[Rule] = Registry("--twins", {"transfer": _transfer})


def transferred_test(
    rule: str, twins: Twins, labelled: Labelled, test_ids: Sequence[str], pred: np.ndarray, where: Path
) -> tuple[np.ndarray, int]:
    """The test predictions after ``rule`` (of ``TWIN_RULES``) gave each test image that has a labelled twin its
    nearest twin's labels, and how many test images have one."""
    labels = test_twin_labels(twins, labelled, test_ids, where)
    return TWIN_RULES[rule](pred, test_ids, labels), len(labels)


def test_twin_labels(twins: Twins, labelled: Labelled, test_ids: Sequence[str], where: Path) -> dict[str, np.ndarray]:
    """Per test image with a labelled twin, the labels of its nearest one (``nearest_twin_labels``): what a twin
    rule gives it, and what a bundle (``solution.ensemble.offline``) carries of the twins."""
    pairs = twins.between("test", list(labelled.rows))
    unknown = sorted(set(pairs["Id"]) - set(test_ids))
    if unknown:
        raise ArtifactError(f"{where} names test image {unknown[0]!r}, which sample_submission.csv lacks: rerun it")
    return nearest_twin_labels(pairs, labelled.of_twins(pairs, where))


def oof_estimate(
    rule: str,
    twins: Twins,
    labelled: Labelled,
    ids: Sequence[str],
    fold: np.ndarray,
    labels: np.ndarray,
    nested: np.ndarray,
    where: Path,
) -> dict[str, Any]:
    """``rule`` (of ``TWIN_RULES``) replayed on the OOF rows (``ids`` in folds order, their ``labels`` and ``nested``
    predictions): how many rows have a twin on the training side of their fold, how often its labels equal
    theirs, and the macro-F1 of the nested predictions without and with the rule."""
    pairs = twins.between("train", list(labelled.rows))
    fold_of = dict(zip(ids, fold.tolist()))
    unknown = sorted(set(pairs["Id"]) - fold_of.keys())
    if unknown:
        raise ArtifactError(f"{where} names train image {unknown[0]!r}, which folds.csv lacks: rerun it")
    other_fold = [
        s != "train" or fold_of[t] != fold_of[i] for i, t, s in zip(pairs["Id"], pairs.twin, pairs.twin_split)
    ]
    pairs = pairs[np.asarray(other_fold, dtype=bool)]
    nearest = nearest_twin_labels(pairs, labelled.of_twins(pairs, where))
    own = dict(zip(ids, labels))
    agree = [bool((nearest[i] == own[i]).all()) for i in nearest]
    return {
        "oof_images_with_a_twin_in_another_fold_or_extra": len(nearest),
        "oof_label_agreement": float(np.mean(agree)) if agree else None,
        "oof_nested_macro_f1_plain": macro_f1(labels, nested),
        "oof_nested_macro_f1_transferred": macro_f1(labels, TWIN_RULES[rule](nested, ids, nearest)),
    }


def average_test_twins(test: np.ndarray, test_ids: Sequence[str], pairs_path: Path) -> tuple[np.ndarray, int, int]:
    """The test probabilities with each duplicate group's test images given their mean, the number of such
    groups (two or more test images) and of the images in them."""
    return average_groups(test, read_groups(groups_path(pairs_path), test_ids, split="test"))


def average_groups(test: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``average_test_twins`` with each test row's group number given (-1: in no group)."""
    out = np.array(test, dtype=np.float64)
    numbers, counts = np.unique(groups[groups >= 0], return_counts=True)
    shared = numbers[counts > 1]
    for number in shared:
        members = groups == number
        out[members] = out[members].mean(axis=0)
    return out, len(shared), int(counts[counts > 1].sum())
