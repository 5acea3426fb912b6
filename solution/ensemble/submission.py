"""The submission: pick a candidate and a threshold rule by honest estimates, apply them to test, validate.

The candidates are every experiment under oof/, the stack, and the blends of
``solution.ensemble.blend`` (plain mean, rank mean, hill-climbed weights). For each
candidate and rule, ``solution.ensemble.estimates`` reports the in-sample OOF macro-F1
and the nested one (cut-offs and blend weights fitted on four folds, scored on
the fifth). The pick is the best nested figure unless ``--source`` / ``--rule``
say otherwise. ``write_submission`` writes ``Id,Predicted`` with exactly the Ids
and order of ``sample_submission.csv`` and a JSON sidecar (source, rule,
cut-offs, estimates, labels per image), both only after every check passed. An upload to Kaggle is
recorded in the sidecar under ``kaggle`` (competition, submission ref, status, public score).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.oof import Aligned, list_experiments, load_aligned
from solution.core.classes import NUM_CLASSES
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import atomic_path, atomic_write_json, file_hash, read_json
from solution.core.tables import parse_target, read_rows, read_sample_submission
from solution.core.workspace import STACK_NAME, SUBMISSIONS_DIR
from solution.ensemble import blend, estimates
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


def record_upload(out: Path, fields: dict[str, Any]) -> None:
    """Merge ``fields`` (competition, ref, status, public score) into the ``kaggle`` record of the sidecar of
    ``out``, rewritten atomically; refused when the sidecar no longer describes the CSV."""
    summary = check_pair(out)
    summary["kaggle"] = {**(summary.get("kaggle") or {}), **fields}
    atomic_write_json(out.with_suffix(".json"), summary)


def upload_record(out: Path, competition: str) -> dict[str, Any] | None:
    """The record in the sidecar of ``out`` of its upload to ``competition``; None where it was not uploaded there."""
    record = read_json(out.with_suffix(".json")).get("kaggle") or {}
    return record if record.get("competition") == competition and record.get("ref") else None


def latest_upload(folder: Path, competition: str) -> Path | None:
    """The submission in ``folder`` whose sidecar records the latest upload to ``competition``; None if none does."""
    uploads = [
        (record["submitted_at"], csv)
        for csv in sorted(folder.glob("*.csv"))
        if csv.with_suffix(".json").is_file() and (record := upload_record(csv, competition))
    ]
    return max(uploads)[1] if uploads else None


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
) -> tuple[dict[str, Any], Path]:
    """Pick, fit, apply and write the submission (``out``, default ``submissions/<picked>.csv``) and its sidecar;
    returns the sidecar's content and the submission's path.

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
    submission = pd.DataFrame({"Id": dataset.test_ids, "Predicted": format_labels(test_pred)})
    summary = {
        "source": cand.name,
        "rule": choice.rule,
        "why": choice.why,
        "options": {
            "shrink": options.shrink,
            "global_below": options.global_below,
            "at_least_one": options.at_least_one,
        },
        "weights": None if cand.weights is None else dict(zip([p.name for p in loaded.preds], cand.weights.tolist())),
        "folds_hash": loaded.folds.hash,
        "thresholds": [float(c) for c in cutoffs],
        "oof_macro_f1": float(choice.row["in_sample_macro_f1"]),
        "nested_macro_f1": float(choice.row["nested_macro_f1"]),
        "test_images": len(submission),
        "test_images_without_label": int((test_pred.sum(axis=1) == 0).sum()),
        "mean_labels_per_test_image": float(test_pred.sum() / len(test_pred)),
        "mean_labels_per_train_image": float(labels.sum() / len(labels)),
        "estimates": choice.table.to_dict(orient="records"),
    }
    hidden = dataset.test_labels()
    if hidden is not None:
        summary["test_macro_f1"] = macro_f1(hidden, test_pred)
        summary["test_macro_f1_most_frequent_class"] = _most_frequent_class_f1(hidden, labels)
    write_pair(out, submission, summary, dataset.root / "sample_submission.csv")
    return summary, out
