"""The submission: pick a candidate and a threshold rule by honest estimates, apply them to test, validate.

The candidates are every experiment under oof/, the stack, and the blends of
``solution.ensemble.blend`` (plain mean, rank mean, hill-climbed weights). For each
candidate and rule, ``solution.ensemble.estimates`` reports the in-sample OOF macro-F1
and the nested one (cut-offs and blend weights fitted on four folds, scored on
the fifth). The pick is the best nested figure unless ``--source`` / ``--rule``
say otherwise. ``write_submission`` writes ``Id,Predicted`` with exactly the Ids
and order of ``sample_submission.csv`` and a JSON sidecar (source, rule,
cut-offs, estimates, labels per image), both only after every check passed;
with a twin rule (``solution.ensemble.twins``) also ``X.twins.csv`` and its
``X.twins.json`` beside ``X.csv``, the same submission with each test image that
has a labelled twin given its twin's labels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.folds import read_twins
from solution.artifacts.oof import Aligned, list_experiments, load_aligned
from solution.core.classes import NUM_CLASSES
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import atomic_path, file_hash, read_json
from solution.core.tables import parse_target, read_rows, read_sample_submission
from solution.core.workspace import DUPLICATES_FILE, STACK_NAME, SUBMISSIONS_DIR
from solution.ensemble import blend, estimates, twins
from solution.scoring import thresholds
from solution.scoring.metrics import macro_f1

log = logging.getLogger(__spec__.name)


def format_labels(pred: np.ndarray) -> list[str]:
    """Space-separated class indices of each 0/1 row ('' where none)."""
    return [" ".join(map(str, np.flatnonzero(row))) for row in pred]


def validate_submission(path: Path, sample_path: Path) -> None:
    """Re-read a written submission: header, the Ids and order of sample_submission.csv, valid labels."""
    rows = read_rows(path, ("Id", "Predicted"))
    if [image_id for _, image_id, _ in rows] != read_sample_submission(sample_path):
        raise ArtifactError(f"{path}: Ids differ from {sample_path} (count or order)")
    for line, _, text in rows:
        if text:
            parse_target(text, f"{path}:{line}")


def _most_frequent_class_f1(hidden: np.ndarray, train_labels: np.ndarray) -> float:
    """The test macro-F1 of predicting the training set's most frequent class for every image: a floor."""
    top = np.eye(NUM_CLASSES, dtype=np.uint8)[train_labels.sum(0).argmax()]
    return macro_f1(hidden, np.tile(top, (len(hidden), 1)))


def check_out(out: Path) -> None:
    """The submission path: a ``.csv`` file (its sidecar is the same name with ``.json``), not a folder."""
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: a submission is a .csv file (its sidecar goes beside it as .json)")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the .csv file to write")


def write_pair(out: Path, submission: pd.DataFrame, summary: dict[str, Any], sample_path: Path) -> None:
    """The CSV (validated first) and its sidecar, renamed into place together; the sidecar records the CSV's hash."""
    with atomic_path(out) as csv_tmp, atomic_path(out.with_suffix(".json")) as json_tmp:
        submission.to_csv(csv_tmp, index=False)
        validate_submission(csv_tmp, sample_path)
        json_tmp.write_text(json.dumps({**summary, "csv_sha256": file_hash(csv_tmp)}, indent=2) + "\n")


def check_pair(out: Path) -> dict[str, Any]:
    """The sidecar of a written submission, refused when it does not describe the CSV beside it."""
    summary = read_json(out.with_suffix(".json"))
    if not out.is_file() or file_hash(out) != summary.get("csv_sha256"):
        raise ArtifactError(f"{out} is not the file {out.with_suffix('.json')} describes: write it again")
    return summary


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


def twins_path(out: Path) -> Path:
    """The twins submission beside a submission: ``X.csv`` -> ``X.twins.csv`` (its sidecar ``X.twins.json``)."""
    return out.with_name(f"{out.stem}.twins.csv")


def _predicted(test_pred: np.ndarray, hidden: np.ndarray | None, labels: np.ndarray) -> dict[str, Any]:
    """What a sidecar says of one set of test predictions: counts, and the hidden-label score where known."""
    found: dict[str, Any] = {
        "test_images": len(test_pred),
        "test_images_without_label": int((test_pred.sum(axis=1) == 0).sum()),
        "mean_labels_per_test_image": float(test_pred.sum() / len(test_pred)),
    }
    if hidden is not None:
        found["test_macro_f1"] = macro_f1(hidden, test_pred)
        found["test_macro_f1_most_frequent_class"] = _most_frequent_class_f1(hidden, labels)
    return found


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
) -> tuple[dict[str, Any], Path]:
    """Pick, fit, apply and write the submission (``out``, default ``submissions/<picked>.csv``) and its sidecar;
    returns the sidecar's content and the submission's path.

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
    summary: dict[str, Any] = {
        "source": cand.name,
        "rule": variant.name,
        "why": choice.why,
        "options": _options(variant.options),
        "weights": None if cand.weights is None else dict(zip([p.name for p in loaded.preds], cand.weights.tolist())),
        "folds_hash": loaded.folds.hash,
        "thresholds": [float(c) for c in cutoffs],
        "oof_macro_f1": float(choice.row["in_sample_macro_f1"]),
        "nested_macro_f1": float(choice.row["nested_macro_f1"]),
        "average_test_twins": averaged,
        **_predicted(test_pred, hidden, labels),
        "mean_labels_per_train_image": float(labels.sum() / len(labels)),
        "estimates": choice.table.to_dict(orient="records"),
    }
    written = [(out, test_pred, summary)]
    if twin_rule is not None:
        moved, summary["twins"] = _twins(twin_rule, loaded, choice, test_pred, pairs_path)
        summary["twins"]["file"] = str(twins_path(out))
        written.append((twins_path(out), moved, {**summary, **_predicted(moved, hidden, labels)}))
    for path, pred, sidecar in written:
        table = pd.DataFrame({"Id": dataset.test_ids, "Predicted": format_labels(pred)})
        write_pair(path, table, sidecar, dataset.root / "sample_submission.csv")
    return summary, out
