"""The report: one HTML page of plots and tables about the predictions, the cut-offs, training and the submission.

``write_report`` reads what the stages wrote (``oof/``, ``folds/``, ``runs/``, a
submission CSV and its JSON sidecar) and writes ``<out>/index.html`` with one
PNG per plot beside it; the page links them by bare file name, so it opens from
disk without a server. Every file is written to a temporary name and renamed,
the page last. Missing predictions or folds are errors; anything else that is
missing (run folders, a submission, a key of its sidecar) is skipped with a
note on the page.

Sections: (1) each candidate's per-class F1, (2) the cut-offs against class
prevalence, (3) training curves per fold, (4) each class's prevalence in each
fold, (5) the candidate x rule estimates, (6) the submission's labels against
the training distribution.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, PercentFormatter

from solution.artifacts.oof import Aligned
from solution.artifacts.runs import HISTORY_FILE, experiment_folds
from solution.artifacts.submissions import Submission, read_submission, sidecar_path
from solution.core.classes import CLASS_NAMES, NUM_CLASSES
from solution.core.errors import ArtifactError
from solution.core.fileio import atomic_path, atomic_write_text
from solution.core.workspace import STACK_NAME
from solution.ensemble.blend import Candidate
from solution.ensemble.estimates import COLUMNS as ESTIMATE_COLUMNS
from solution.ensemble.estimates import estimate_table, pick_best
from solution.ensemble.submission import load_candidates
from solution.scoring import thresholds

DPI = 80
TITLES = (
    "1. Per-class F1 of each candidate",
    "2. Cut-offs against class prevalence",
    "3. Training curves",
    "4. Fold prevalence per class",
    "5. Estimates: candidate x threshold rule",
    "6. Submission against the training distribution",
)
HISTORY_COLUMNS = ("val_macro_f1_fitted", "train_loss", "val_loss")
SIDECAR_SUMMARY = ("source", "rule", "oof_macro_f1", "nested_macro_f1", "mean_labels_per_test_image")

Fits = dict[str, tuple[np.ndarray, np.ndarray]]  # candidate name -> (F1-fitted cut-offs, in-sample per-class F1)


@dataclass
class Section:
    """One part of the page: plots (file name, figure), a caption, an HTML table and notes on what was skipped."""

    title: str
    caption: str = ""
    figures: list[tuple[str, Figure]] = field(default_factory=list)
    table: str = ""
    notes: list[str] = field(default_factory=list)


def _figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg, outside pyplot: nothing global to close, no display needed."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    classes = row_classes or [""] * len(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        (f'<tr class="{cls}">' if cls else "<tr>") + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row, cls in zip(rows, classes)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _class_rows(*columns: np.ndarray, digits: int = 3) -> list[list[str]]:
    """One row per class: index, name, then each column's value."""
    return [[str(c), CLASS_NAMES[c], *(f"{col[c]:.{digits}f}" for col in columns)] for c in range(NUM_CLASSES)]


def f1_section(fits: Fits, labels: np.ndarray) -> Section:
    names = list(fits)
    scores = np.array([fits[name][1] for name in names])
    fig = _figure(10, 3.2)
    ax = fig.add_subplot()
    x = np.arange(NUM_CLASSES)
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar(x - 0.4 + width * (k + 0.5), scores[k], width, label=f"{name} ({scores[k].mean():.3f})")
    ax.set(xticks=x, xlabel="class", ylabel="F1 (in-sample)", ylim=(0, 1))
    fig.legend(fontsize=7, ncols=min(len(names), 6), loc="outside upper center")
    positives = labels.sum(axis=0)
    rows = [[*row[:2], str(int(positives[c])), *row[2:]] for c, row in enumerate(_class_rows(*scores))]
    rows.append(["", "macro-F1", "", *(f"{s:.4f}" for s in scores.mean(axis=1))])
    return Section(
        TITLES[0],
        "Each candidate's F1 per class on the OOF predictions, with each class's cut-off fitted on the same OOF "
        "rows it scores: in-sample, so optimistic, most of all for rare classes (section 5 has nested figures). "
        "Candidates: each experiment under oof/, the stack if present, and the blends (mean, rank_mean, "
        "hill_climb) when there are two experiments or more. The legend gives each one's in-sample macro-F1.",
        [("f1_per_class.png", fig)],
        _table(["class", "name", "positives", *names], rows),
    )


def _shown_cutoffs(fits: Fits, sub: Submission | None) -> tuple[np.ndarray, str, list[str]]:
    """(cut-offs, what they are, notes): the submitted ones where the sidecar allows, else a fitted candidate's."""
    best = max(fits, key=lambda name: fits[name][1].mean())
    fallback = f"the F1-fitted cut-offs of {best}, the best candidate by in-sample macro-F1"
    if sub is None:
        return fits[best][0], f"no submission: {fallback}", []
    cutoffs = np.asarray(sub.sidecar.thresholds, dtype=np.float64)
    return cutoffs, f"the submitted cut-offs of {sub.sidecar.source} (rule {sub.sidecar.rule})", []


def cutoff_section(fits: Fits, labels: np.ndarray, sub: Submission | None) -> Section:
    cutoffs, what, notes = _shown_cutoffs(fits, sub)
    prevalence = labels.mean(axis=0)
    floor = 0.5 / len(labels)  # where a class without positives is drawn: the log axis has no 0
    absent = prevalence == 0
    x = np.where(absent, floor, prevalence)
    fig = _figure(6, 3.6)
    ax = fig.add_subplot()
    ax.scatter(x[~absent], cutoffs[~absent], s=18, label="class")
    if absent.any():
        ax.scatter(x[absent], cutoffs[absent], s=18, facecolors="none", edgecolors="C3", label="no positives")
    for c in range(NUM_CLASSES):
        ax.annotate(str(c), (x[c], cutoffs[c]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="training prevalence (% of images, log scale)", ylabel="cut-off")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    caption = (
        f"Each class's cut-off ({what}) against its prevalence in train.csv, log scale; points are labelled "
        f"with the class index, the dashed line is 0.5. Classes without positives (hollow) sit at 1/(2N). "
        "Rare classes with a low cut-off are where a fitted cut-off is most likely to fit noise."
    )
    table = _table(["class", "name", "prevalence", "cut-off"], _class_rows(prevalence, cutoffs, digits=4))
    return Section(TITLES[1], caption, [("cutoffs.png", fig)], table, notes)


def _read_history(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable CSV ({exc})") from exc
    if "epoch" not in frame or not any(c in frame for c in HISTORY_COLUMNS):
        raise ArtifactError(f"{path}: needs an epoch column and one of {', '.join(HISTORY_COLUMNS)}")
    return frame.apply(pd.to_numeric, errors="coerce")


def read_histories(runs_dir: Path, experiment: str, notes: list[str]) -> dict[int, pd.DataFrame]:
    """Each fold's ``history.csv`` under ``runs/<experiment>/fold<k>/``; what is missing or unreadable is noted."""
    histories = {}
    for k, fold_dir in experiment_folds(runs_dir, experiment).items():
        try:
            histories[k] = _read_history(fold_dir / HISTORY_FILE)
        except ArtifactError as exc:
            notes.append(f"skipped {exc}")
    return histories


def _curves_figure(name: str, histories: dict[int, pd.DataFrame]) -> Figure:
    fig = _figure(8, 2.6)
    f1_ax, loss_ax = fig.subplots(1, 2)
    for k, frame in histories.items():
        style = {"color": f"C{k % 10}", "marker": "o", "ms": 3}
        if "val_macro_f1_fitted" in frame:
            f1_ax.plot(frame["epoch"], frame["val_macro_f1_fitted"], label=f"fold {k}", **style)
        if "train_loss" in frame:
            loss_ax.plot(frame["epoch"], frame["train_loss"], ls="-", **style)
        if "val_loss" in frame:
            loss_ax.plot(frame["epoch"], frame["val_loss"], ls="--", **style)
    f1_ax.set(title=f"{name}: validation macro-F1 (fitted cut-offs)", xlabel="epoch")
    loss_ax.set(title="loss: train solid, validation dashed", xlabel="epoch")
    f1_ax.legend(fontsize=7)
    for ax in (f1_ax, loss_ax):
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def curves_section(runs_dir: Path, experiments: list[str]) -> Section:
    section = Section(
        TITLES[2],
        "Per experiment, each fold's validation macro-F1 with cut-offs fitted on that fold's validation images "
        f"(val_macro_f1_fitted) and its training and validation loss per epoch, from {runs_dir}/<experiment>/"
        "fold<k>/history.csv; one colour per fold.",
    )
    exp_dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for exp_dir in exp_dirs:
        histories = read_histories(runs_dir, exp_dir.name, section.notes)
        if histories:
            slug = re.sub(r"[^A-Za-z0-9_.-]", "_", exp_dir.name)
            section.figures.append((f"curves_{slug}.png", _curves_figure(exp_dir.name, histories)))
        else:
            section.notes.append(f"{exp_dir}/: no fold with a readable history.csv")
    plotted = {p.name for p in exp_dirs}
    section.notes += [f"{name}: no run folders in {runs_dir}/" for name in experiments if name not in plotted]
    return section


def fold_section(labels: np.ndarray, fold: np.ndarray) -> Section:
    ks = np.unique(fold)
    prevalence = np.array([labels.mean(axis=0)] + [labels[fold == k].mean(axis=0) for k in ks])
    fig = _figure(10, 0.3 * len(prevalence) + 1.3)
    ax = fig.add_subplot()
    image = ax.imshow(100 * prevalence, aspect="auto", cmap="viridis")
    ax.set(xticks=np.arange(NUM_CLASSES), xlabel="class", yticks=np.arange(len(prevalence)))
    ax.set_yticklabels(["all"] + [f"fold {k}" for k in ks])
    fig.colorbar(image, ax=ax, label="% of images")
    gap = np.abs(prevalence[1:] - prevalence[0])
    worst_fold, worst_class = np.unravel_index(gap.argmax(), gap.shape)
    caption = (
        "Each class's prevalence (% of images with the label) in the whole training set and in each fold's "
        "validation images. Stratified folds keep each row close to the first; the largest gap is "
        f"{100 * gap.max():.2f} points (class {worst_class}, fold {ks[worst_fold]})."
    )
    rows = _class_rows(*(100 * prevalence), digits=2)
    rows.append(["", "images", str(len(fold)), *(str(int((fold == k).sum())) for k in ks)])
    table = _table(["class", "name", "all %", *(f"fold {k} %" for k in ks)], rows)
    return Section(TITLES[3], caption, [("fold_prevalence.png", fig)], table)


def _estimates(
    cands: list[Candidate], labels: np.ndarray, fold: np.ndarray, sub: Submission | None
) -> tuple[pd.DataFrame, str, list[str]]:
    """(table, where it came from, notes): the sidecar's estimates when it has usable ones, else computed here."""
    if sub is None:
        computed = "computed here with solution.ensemble.estimates.estimate_table (default rule options)"
        return estimate_table(cands, labels, fold), f"{computed}: no submission", []
    table = pd.DataFrame(sub.sidecar.estimates)
    return table[[c for c in ESTIMATE_COLUMNS if c in table]], f"from {sidecar_path(sub.path)}", []


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _best_row(table: pd.DataFrame) -> int:
    """Position of the best nested row in a table of default index, with ``pick_best``'s draw rule."""
    pooled = table["nested_pooled_macro_f1"] if "nested_pooled_macro_f1" in table else np.nan
    return int(pick_best(table.assign(nested_pooled_macro_f1=pooled)).name)


def _estimates_figure(table: pd.DataFrame, best: int) -> Figure:
    labels = [f"{c} / {r}" for c, r in zip(table["candidate"], table["rule"])]
    y = np.arange(len(table))
    fig = _figure(7, 0.22 * len(table) + 1.0)
    ax = fig.add_subplot()
    ax.hlines(y, table["nested_macro_f1"], table["in_sample_macro_f1"], color="lightgrey")
    ax.scatter(table["in_sample_macro_f1"], y, s=16, marker="o", label="in-sample")
    ax.scatter(table["nested_macro_f1"], y, s=16, marker="D", label="nested")
    ax.scatter(table["nested_macro_f1"].iloc[best], best, s=120, marker="*", color="C3", label="best nested")
    ax.set(yticks=y, xlabel="macro-F1")
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    return fig


def estimates_section(cands: list[Candidate], labels: np.ndarray, fold: np.ndarray, sub: Submission | None) -> Section:
    table, origin, notes = _estimates(cands, labels, fold, sub)
    table = table.reset_index(drop=True)
    best = _best_row(table)
    submitted = (sub.sidecar.source, sub.sidecar.rule) if sub else (None, None)
    rows = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    pairs = enumerate(zip(table["candidate"], table["rule"]))
    classes = [" ".join(["best"] * (i == best) + ["submitted"] * (pair == submitted)) for i, pair in pairs]
    best_row = table.loc[best]
    caption = (
        f"Macro-F1 of each (candidate, threshold rule) pair, {origin}. In-sample: cut-offs (and hill-climb "
        "weights) fitted on the same OOF rows they score; nested: fitted on the other folds and scored on each "
        "fold, then averaged over folds. The best nested row is highlighted "
        f"({best_row['candidate']} / {best_row['rule']}: {best_row['nested_macro_f1']:.4f})"
        + ("; the submitted pair is in bold." if sub else ".")
    )
    return Section(
        TITLES[4],
        caption,
        [("estimates.png", _estimates_figure(table, best))],
        _table(list(table), rows, classes),
        notes,
    )


def _submission_figure(
    sub_rate: np.ndarray, train_rate: np.ndarray, sub_counts: np.ndarray, train_counts: np.ndarray
) -> Figure:
    fig = _figure(10, 2.8)
    classes_ax, counts_ax = fig.subplots(1, 2, width_ratios=(3, 1))
    x = np.arange(NUM_CLASSES)
    classes_ax.bar(x - 0.2, sub_rate, 0.4, label="submission (test)")
    classes_ax.bar(x + 0.2, train_rate, 0.4, label="train.csv")
    classes_ax.set(xticks=x, xlabel="class", ylabel="fraction of images with the class")
    classes_ax.legend(fontsize=7)
    n = np.arange(max(len(sub_counts), len(train_counts)))
    for offset, counts, label in ((-0.2, sub_counts, "submission"), (0.2, train_counts, "train")):
        counts_ax.bar(n[: len(counts)] + offset, counts / counts.sum(), 0.4, label=label)
    counts_ax.set(xticks=n, xlabel="labels per image", ylabel="fraction of images")
    counts_ax.legend(fontsize=7)
    return fig


def _sidecar_summary(sub: Submission) -> str:
    return _table(["sidecar", "value"], [[k, _cell(getattr(sub.sidecar, k))] for k in SIDECAR_SUMMARY])


def submission_section(
    sub: Submission | None, unusable: str | None, labels: np.ndarray, test_ids: list[str]
) -> Section:
    section = Section(TITLES[5])
    if sub is None:
        section.notes.append(
            unusable
            or "No submission: none in submissions/ with a .json sidecar beside it. Write one with "
            "python -m solution.make_submission, or pass --submission PATH."
        )
        return section
    summary = _sidecar_summary(sub)
    if sub.ids != test_ids:
        section.notes.append(f"{sub.path}: its Ids are not those of sample_submission.csv in its order")
    sub_rate, train_rate = sub.pred.mean(axis=0), labels.mean(axis=0)
    sub_counts, train_counts = (np.bincount(m.sum(axis=1)) for m in (sub.pred, labels))
    section.figures.append(("submission.png", _submission_figure(sub_rate, train_rate, sub_counts, train_counts)))
    section.caption = (
        f"Left: per class, the fraction of the {len(sub.pred)} test images in {sub.path} predicted with it, "
        "beside its fraction of the training images. Right: how many labels each image has, in the submission "
        f"({sub.pred.sum() / len(sub.pred):.2f} per image) and in train.csv ({labels.sum() / len(labels):.2f})."
    )
    table = _table(["class", "name", "submission", "train"], _class_rows(sub_rate, train_rate))
    section.table = summary + table
    return section


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>HPA kit report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0; }}
table {{ border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 1px 6px; text-align: right; }}
tr.best {{ background: #fff3b0; }}
tr.submitted {{ font-weight: bold; }}
.note {{ color: #8a4b00; }}
details {{ margin-bottom: 1em; }}
</style></head>
<body>
<h1>HPA kit report</h1>
{intro}
{sections}
</body></html>
"""


def render_section(section: Section) -> str:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>"]
    parts += [f'<img src="{html.escape(name)}" alt="{html.escape(section.title)}">' for name, _ in section.figures]
    if section.caption:
        parts.append(f"<p>{html.escape(section.caption)}</p>")
    parts += [f'<p class="note">Note: {html.escape(note)}</p>' for note in section.notes]
    if section.table:
        parts.append(f"<details open><summary>table</summary>{section.table}</details>")
    return "\n".join(parts + ["</section>"])


def _intro(aligned: Aligned, oof_dir: Path, sub: Submission | None) -> str:
    submission = str(sub.path) if sub else "none"
    lines = [
        f"Predictions: {oof_dir}/ ({', '.join(p.name for p in aligned.preds)})",
        f"Folds: {aligned.folds.n_folds} folds, hash {aligned.folds.hash}; dataset {aligned.dataset.root} "
        f"({len(aligned.labels)} training images, {len(aligned.dataset.test_ids)} test images)",
        f"Submission: {submission}",
    ]
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _usable_submission(path: Path | None) -> tuple[Submission | None, str | None]:
    """The submission and its sidecar, or None and why it cannot be shown; a path that is not there is an error
    (it was asked for)."""
    if path is None:
        return None, None
    if not path.is_file():
        raise ArtifactError(f"missing submission file: {path}")
    try:
        return read_submission(path), None
    except ArtifactError as exc:
        return None, f"{path} cannot be shown: {exc}"


def write_report(
    oof_dir: Path, folds_dir: Path, data_dir: Path | None, runs_dir: Path, submission: Path | None, out_dir: Path
) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; returns the page's path."""
    aligned, cands = load_candidates(oof_dir, folds_dir, data_dir)
    sub, unusable = _usable_submission(submission)
    labels, fold = aligned.labels, aligned.folds.fold
    fits = {c.name: thresholds.fit_with_scores(c.oof, labels) for c in cands}
    experiments = [p.name for p in aligned.preds if p.name != STACK_NAME]
    sections = [
        f1_section(fits, labels),
        cutoff_section(fits, labels, sub),
        curves_section(runs_dir, experiments),
        fold_section(labels, fold),
        estimates_section(cands, labels, fold, sub),
        submission_section(sub, unusable, labels, aligned.dataset.test_ids),
    ]
    for section in sections:
        for name, fig in section.figures:
            with atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, format="png")
    page = PAGE.format(intro=_intro(aligned, oof_dir, sub), sections="\n".join(map(render_section, sections)))
    atomic_write_text(out_dir / "index.html", page)
    return out_dir / "index.html"
