"""The submission: pick a candidate and a threshold rule by honest estimates, apply them to test, validate.

The candidates are every experiment under oof/, the stack, and the blends of
``solution.ensemble.blend`` (plain mean, rank mean, hill-climbed weights). For each
candidate and rule, ``solution.ensemble.estimates`` reports the in-sample OOF macro-F1
and the nested one (cut-offs and blend weights fitted on four folds, scored on
the fifth). The pick is the best nested figure unless ``--source`` / ``--rule``
say otherwise. ``write_submission`` writes the submission and its sidecar
(``solution.artifacts.submissions``) only after every check passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from solution.artifacts.oof import Aligned, list_experiments, load_aligned
from solution.artifacts.submissions import Sidecar, check_out, write_pair
from solution.core.classes import NUM_CLASSES
from solution.core.errors import ArtifactError
from solution.core.workspace import STACK_NAME, SUBMISSIONS_DIR
from solution.ensemble import blend, estimates
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
    rule: str
    row: pd.Series  # its line of the estimates table
    table: pd.DataFrame  # every candidate x rule
    why: str


def choose(
    cands: list[blend.Candidate],
    labels: np.ndarray,
    fold: np.ndarray,
    options: thresholds.RuleOptions,
    source: str | None = None,
    rule: str | None = None,
) -> Choice:
    """The candidate and rule with the best nested macro-F1, among those ``source`` and ``rule`` allow."""
    by_name = {c.name: c for c in cands}
    if source is not None and source not in by_name:
        raise ArtifactError(f"no candidate named {source!r}; available: {', '.join(by_name)}")
    rules = (thresholds.RULES.check(rule),) if rule else tuple(thresholds.RULES)
    pool = [by_name[source]] if source else cands
    table = estimates.estimate_table(pool, labels, fold, rules, options)
    row = estimates.pick_best(table)
    told = " and ".join(f"{what} {value}" for what, value in (("--source", source), ("--rule", rule)) if value)
    why = f"as told by {told}" if told else f"the best nested macro-F1 of {len(pool)} candidates x {len(rules)} rules"
    return Choice(by_name[row["candidate"]], row["rule"], row, table, why)


def write_submission(
    out: Path | None,
    oof_dir: Path,
    folds_dir: Path,
    data_dir: Path | None,
    options: thresholds.RuleOptions,
    source: str | None = None,
    rule: str | None = None,
) -> tuple[Sidecar, Path]:
    """Pick, fit, apply and write the submission (``out``, default ``submissions/<picked>.csv``) and its sidecar;
    returns the sidecar and the submission's path.

    Everything, the hidden-label score included, is computed before either file is replaced.
    """
    if out is not None:
        check_out(out)
    loaded, cands = load_candidates(oof_dir, folds_dir, data_dir)
    labels, dataset = loaded.labels, loaded.dataset
    choice = choose(cands, labels, loaded.folds.fold, options, source, rule)
    cand = choice.candidate
    out = out or SUBMISSIONS_DIR / f"{cand.name}.csv"
    cutoffs = thresholds.fit_rule(choice.rule, thresholds.RuleInput(cand.oof, labels, cand.test), options)
    test_pred = thresholds.apply(cand.test, cutoffs, options.at_least_one)
    hidden = dataset.test_labels()
    sidecar = Sidecar(
        source=cand.name,
        rule=choice.rule,
        why=choice.why,
        options={"shrink": options.shrink, "global_below": options.global_below, "at_least_one": options.at_least_one},
        weights=None if cand.weights is None else dict(zip([p.name for p in loaded.preds], cand.weights.tolist())),
        folds_hash=loaded.folds.hash,
        thresholds=[float(c) for c in cutoffs],
        oof_macro_f1=float(choice.row["in_sample_macro_f1"]),
        nested_macro_f1=float(choice.row["nested_macro_f1"]),
        test_images=len(test_pred),
        test_images_without_label=int((test_pred.sum(axis=1) == 0).sum()),
        mean_labels_per_test_image=float(test_pred.sum() / len(test_pred)),
        mean_labels_per_train_image=float(labels.sum() / len(labels)),
        estimates=choice.table.to_dict(orient="records"),
        test_macro_f1=None if hidden is None else macro_f1(hidden, test_pred),
        test_macro_f1_most_frequent_class=None if hidden is None else _most_frequent_class_f1(hidden, labels),
    )
    sidecar = write_pair(out, dataset.test_ids, test_pred, sidecar, dataset.root / "sample_submission.csv")
    return sidecar, out
