"""The submission: pick a candidate and a threshold rule by honest estimates, apply them to test, validate.

The candidates are every experiment under oof/, the stack, and the blends of
``solution.ensemble.blend`` (plain mean, rank mean, hill-climbed weights). For each
candidate and rule, ``solution.ensemble.estimates`` reports the in-sample OOF macro-F1
and the nested one (cut-offs and blend weights fitted on four folds, scored on
the fifth). The pick is the best nested figure unless ``--source`` / ``--rule``
say otherwise. ``write_submission`` writes the submission and its sidecar
(``solution.artifacts.submissions``) only after every check passed; with a twin
rule (``solution.ensemble.twins``) also ``X.twins.csv`` and its sidecar beside
``X.csv``: the same submission with each test image that has a labelled twin
given its twin's labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.folds import read_twins
from solution.artifacts.oof import Aligned, list_experiments, load_aligned
from solution.artifacts.submissions import Sidecar, check_out, twins_path, write_pair
from solution.core.classes import NUM_CLASSES
from solution.core.errors import ArtifactError
from solution.core.workspace import DUPLICATES_FILE, STACK_NAME, SUBMISSIONS_DIR
from solution.ensemble import blend, estimates, twins
from solution.scoring import thresholds
from solution.scoring.metrics import macro_f1

log = logging.getLogger(__spec__.name)


def _most_frequent_class_f1(hidden: np.ndarray, train_labels: np.ndarray) -> float:
    """The test macro-F1 of predicting the training set's most frequent class for every image: a floor."""
    top = np.eye(NUM_CLASSES, dtype=np.uint8)[train_labels.sum(0).argmax()]
    return macro_f1(hidden, np.tile(top, (len(hidden), 1)))


def load_candidates(oof_dir: Path, folds_dir: Path, data_dir: Path | None) -> tuple[Aligned, list[blend.Candidate]]:
    """Every experiment under oof/, its blends, and the stack where there is one, aligned to the folds."""
    names = list_experiments(oof_dir)
    if not names:
        raise ArtifactError(f"no predictions in {oof_dir}/: run scripts/train_folds.sh (and python -m solution.stack)")
    has_stack = (oof_dir / STACK_NAME / "manifest.json").is_file()
    loaded = load_aligned(names + [STACK_NAME] * has_stack, oof_dir, folds_dir, data_dir)
    experiments = loaded.preds[: len(names)]
    oofs = [p.oof_probs for p in experiments]
    cands = blend.candidates(names, oofs, [p.test_probs for p in experiments], loaded.labels)
    if has_stack:
        stacked = loaded.preds[-1]
        cands.append(blend.Candidate(STACK_NAME, stacked.oof_probs, stacked.test_probs))
    return loaded, cands


@dataclass(frozen=True)
class Choice:
    candidate: blend.Candidate
    variant: estimates.Variant  # the rule and its options; its name is the table's ``rule``
    row: pd.Series  # its line of the estimates table
    table: pd.DataFrame  # every candidate x rule variant
    why: str


def choose(
    cands: list[blend.Candidate],
    labels: np.ndarray,
    fold: np.ndarray,
    options: thresholds.RuleOptions,
    source: str | None = None,
    rule: str | None = None,
) -> Choice:
    """The candidate and rule variant (``estimates.rule_variants``) with the best nested macro-F1, among those
    ``source`` and ``rule`` allow."""
    by_name = {c.name: c for c in cands}
    if source is not None and source not in by_name:
        raise ArtifactError(f"no candidate named {source!r}; available: {', '.join(by_name)}")
    rules = (thresholds.RULES.check(rule),) if rule else tuple(thresholds.RULES)
    pool = [by_name[source]] if source else cands
    table = estimates.estimate_table(pool, labels, fold, rules, options)
    row = estimates.pick_best(table)
    told = " and ".join(f"{what} {value}" for what, value in (("--source", source), ("--rule", rule)) if value)
    variants = {v.name: v for v in estimates.rule_variants(rules, options)}
    why = f"the best nested macro-F1 of {len(pool)} candidates x {len(variants)} rules"
    if told:  # what is left to pick, variants of a rule told included
        why = f"as told by {told}" + (f"; {why}" if len(pool) * len(variants) > 1 else "")
    return Choice(by_name[row["candidate"]], variants[row["rule"]], row, table, why)


def _predicted(test_pred: np.ndarray, hidden: np.ndarray | None, labels: np.ndarray) -> dict[str, Any]:
    """What a sidecar says of one set of test predictions: counts, and the hidden-label score where known."""
    return {
        "test_images": len(test_pred),
        "test_images_without_label": int((test_pred.sum(axis=1) == 0).sum()),
        "mean_labels_per_test_image": float(test_pred.sum() / len(test_pred)),
        "test_macro_f1": None if hidden is None else macro_f1(hidden, test_pred),
        "test_macro_f1_most_frequent_class": None if hidden is None else _most_frequent_class_f1(hidden, labels),
    }


def _twins(
    rule: str, loaded: Aligned, choice: Choice, test_pred: np.ndarray, pairs_path: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    """The twin rule's test predictions, and what the sidecars record of it: how many images changed and the
    rule replayed on the nested OOF predictions of the chosen candidate and rule."""
    found, dataset, folds = read_twins(pairs_path), loaded.dataset, loaded.folds
    labelled = twins.Labelled.of(found, dataset.train_ids, dataset.train_labels)
    moved, with_twin = twins.transferred_test(rule, found, labelled, dataset.test_ids, test_pred, pairs_path)
    nested = estimates.nested_prediction(choice.candidate, loaded.labels, folds.fold, choice.variant)
    estimate = twins.oof_estimate(rule, found, labelled, folds.ids, folds.fold, loaded.labels, nested, pairs_path)
    return moved, {
        "rule": rule,
        "test_images_with_a_labelled_twin": with_twin,
        "changed_images": int((moved != test_pred).any(axis=1).sum()),
        **estimate,
    }


def _options(options: thresholds.RuleOptions) -> dict[str, Any]:
    return {
        "shrink": options.shrink,
        "global_below": options.global_below,
        "at_least_one": options.at_least_one,
        "bag": options.bag,
        "prior_rates": None if options.prior_rates is None else list(options.prior_rates),
    }


def write_submission(
    out: Path | None,
    oof_dir: Path,
    folds_dir: Path,
    data_dir: Path | None,
    options: thresholds.RuleOptions,
    source: str | None = None,
    rule: str | None = None,
    twin_rule: str | None = None,
    average_test_twins: bool = False,
) -> tuple[Sidecar, Path]:
    """Pick, fit, apply and write the submission (``out``, default ``submissions/<picked>.csv``) and its sidecar;
    returns the sidecar and the submission's path.

    ``average_test_twins`` gives each duplicate group's test images their mean probabilities first. With a
    ``twin_rule`` (of ``twins.TWIN_RULES``) the twins submission (``twins_path``) and its sidecar are written
    too, and the sidecars' ``twins`` entry says how many images it changed and how the rule scores on the OOF
    rows. Everything, the hidden-label scores included, is computed before any file is replaced.
    """
    if out is not None:
        check_out(out)
    if twin_rule is not None:
        twins.TWIN_RULES.check(twin_rule)
    loaded, cands = load_candidates(oof_dir, folds_dir, data_dir)
    labels, dataset = loaded.labels, loaded.dataset
    choice = choose(cands, labels, loaded.folds.fold, options, source, rule)
    cand, variant, pairs_path = choice.candidate, choice.variant, folds_dir / DUPLICATES_FILE
    out = out or SUBMISSIONS_DIR / f"{cand.name}.csv"
    test, averaged = cand.test, None
    if average_test_twins:
        test, n_groups, n_images = twins.average_test_twins(cand.test, dataset.test_ids, pairs_path)
        averaged = {"groups": n_groups, "images": n_images}
    cutoffs = thresholds.fit_rule(variant.rule, thresholds.RuleInput(cand.oof, labels, test), variant.options)
    test_pred = thresholds.apply(test, cutoffs, options.at_least_one)
    hidden = dataset.test_labels()
    sidecar = Sidecar(
        source=cand.name,
        rule=variant.name,
        why=choice.why,
        options=_options(variant.options),
        weights=None if cand.weights is None else dict(zip([p.name for p in loaded.preds], cand.weights.tolist())),
        folds_hash=loaded.folds.hash,
        thresholds=[float(c) for c in cutoffs],
        oof_macro_f1=float(choice.row["in_sample_macro_f1"]),
        nested_macro_f1=float(choice.row["nested_macro_f1"]),
        mean_labels_per_train_image=float(labels.sum() / len(labels)),
        estimates=choice.table.to_dict(orient="records"),
        average_test_twins=averaged,
        **_predicted(test_pred, hidden, labels),
    )
    written = [(out, test_pred, sidecar)]
    if twin_rule is not None:
        moved, record = _twins(twin_rule, loaded, choice, test_pred, pairs_path)
        sidecar = replace(sidecar, twins={**record, "file": str(twins_path(out))})
        written = [
            (out, test_pred, sidecar),
            (twins_path(out), moved, replace(sidecar, **_predicted(moved, hidden, labels))),
        ]
    sample = dataset.root / "sample_submission.csv"
    sidecars = [write_pair(path, dataset.test_ids, pred, each, sample) for path, pred, each in written]
    return sidecars[0], out
