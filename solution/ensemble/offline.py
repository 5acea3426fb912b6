"""Offline prediction, the torch-free half: export a written submission as a bundle, and turn a bundle's
experiments' test probabilities into its CSV.

``export_bundle`` reads the submission's sidecar and gathers what made its CSV from the experiments' test
probabilities: every fold checkpoint of the candidate's experiments, their OOF probabilities and the OOF labels
(``blend.candidates`` fits the blends on them), the stack's LightGBM boosters (fitted again with the settings its
manifest records: ``stack`` is deterministic), the cut-offs, and a twins submission's labels or the test groups
averaged. Before writing anything it replays the recipe on the recorded test probabilities of ``oof/`` and
refuses a bundle that does not give the submission's bytes. ``Recipe.scores`` and ``Recipe.apply`` are the
replay and what ``python -m solution.predict --bundle`` runs: the same functions ``make_submission`` uses
(``blend.candidates``, ``stacking.predict_stacked``, ``twins.average_groups``, ``thresholds.apply``,
``twins.TWIN_RULES``, ``submissions.write_csv``), so equal probabilities give equal bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from solution.artifacts import bundle as files
from solution.artifacts.bundle import BundleManifest, StackRecipe
from solution.artifacts.folds import groups_path, read_groups, read_twins
from solution.artifacts.oof import Aligned, list_experiments, load_aligned, read_probs_file
from solution.artifacts.runs import FoldRun
from solution.artifacts.submissions import (
    Sidecar,
    format_labels,
    newest_submission,
    read_sidecar,
    sidecar_path,
    write_csv,
)
from solution.core.classes import PROB_COLUMNS
from solution.core.errors import ArtifactError
from solution.core.fileio import file_hash, read_json, run_info
from solution.core.ids import align
from solution.core.tables import read_labels_csv
from solution.core.workspace import DUPLICATES_FILE, STACK_NAME, SUBMISSIONS_DIR
from solution.ensemble import blend, stacking, twins
from solution.scoring import thresholds

if TYPE_CHECKING:
    import lightgbm as lgb  # imported where boosters are read, as in ``stacking``


@dataclass(frozen=True)
class Recipe:
    """A bundle's manifest with what its files hold: per experiment its OOF probabilities (folds order) and the
    OOF labels, the stack's boosters, the twins' labels and the test groups, by test Id."""

    manifest: BundleManifest
    oofs: list[np.ndarray]
    oof_labels: np.ndarray
    boosters: dict[int, list[lgb.Booster]] = field(default_factory=dict)
    twin_labels: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    def scores(self, tests: list[np.ndarray]) -> np.ndarray:
        """(M, 28) scores of the picked candidate from each experiment's (M, 28) float32 test probabilities (in
        ``manifest.experiments`` order), as ``make_submission`` scored the test set: what the cut-offs apply to."""
        m = self.manifest
        if m.stack is not None:
            probs = np.stack(tests)
            stacked = stacking.predict_stacked(self.boosters, probs, m.stack.features)
            return stacking.with_mean(m.stack.blend, stacked, probs).astype(np.float32)  # as oof/stack/ holds it
        cands = blend.candidates(list(m.experiments), self.oofs, tests, self.oof_labels)
        return next(c.test for c in cands if c.name == m.source)

    def apply(self, scores: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores after the test groups' averaging, 0/1 labels) of the images ``ids``: averaged, cut, and given
        their twins' labels as the exported submission was. Images the bundle knows no group or twin of keep
        their own scores and labels."""
        m = self.manifest
        if m.average_test_twins:
            scores = twins.average_groups(scores, np.array([self.groups.get(i, -1) for i in ids]))[0]
        pred = thresholds.apply(scores, np.asarray(m.cutoffs), m.at_least_one)
        if m.twin_rule is not None:
            pred = twins.TWIN_RULES[m.twin_rule](pred, ids, self.twin_labels)
        return scores, pred


def read_recipe(bundle: Path) -> Recipe:
    """The recipe of a bundle, every file checked against its manifest (``files.read_bundle``)."""
    manifest = files.read_bundle(bundle)
    ids, labels = read_labels_csv(bundle / files.LABELS)
    oofs = []
    for name in manifest.experiments:
        path = files.oof_path(bundle, name)
        oofs.append(align(read_probs_file(path), ids, str(path))[list(PROB_COLUMNS)].to_numpy(np.float32))
    boosters = {}
    if manifest.stack is not None:
        import lightgbm as lgb  # see the imports

        recipe = manifest.stack
        boosters = {
            c: [lgb.Booster(model_file=files.booster_path(bundle, c, k)) for k in range(recipe.n_folds)]
            for c in recipe.classes
        }
    twin_labels = dict(zip(*read_labels_csv(bundle / files.TWINS))) if manifest.twin_rule is not None else {}
    groups = files.read_id_table(bundle / files.TEST_GROUPS, "group") if manifest.average_test_twins else {}
    return Recipe(
        manifest=manifest,
        oofs=oofs,
        oof_labels=labels,
        boosters=boosters,
        twin_labels=twin_labels,
        groups={i: int(g) for i, g in groups.items()},
    )


def _inputs(sidecar: Sidecar, oof_dir: Path) -> list[str]:
    """The experiments the picked candidate is made of, in the order ``make_submission`` took them."""
    if sidecar.source == STACK_NAME:
        return list(load_stack_settings(oof_dir)["inputs"])
    if sidecar.source in blend.BLEND_NAMES:
        return list_experiments(oof_dir)
    return [sidecar.source]


def load_stack_settings(oof_dir: Path) -> dict:
    """The settings ``oof/stack/manifest.json`` records (inputs, options)."""
    return read_json(oof_dir / STACK_NAME / "manifest.json")["settings"]


def _boosters(loaded: Aligned, settings: dict) -> tuple[StackRecipe, dict[int, list[str]]]:
    """The stack fitted again as ``solution.stack`` fitted it (its manifest's options), its boosters as text."""
    options = stacking.StackOptions(**settings["options"])
    stacked = stacking.stack(
        np.stack([p.oof_probs for p in loaded.preds]),
        loaded.labels,
        loaded.folds.fold,
        np.stack([p.test_probs for p in loaded.preds]),
        options.features,
        options.seed,
        options.n_jobs,
        options.mean_below,
    )
    texts = {c: [b.model_to_string() for b in fold_boosters] for c, fold_boosters in stacked.boosters.items()}
    recipe = StackRecipe(
        inputs=list(settings["inputs"]),
        features=options.features,
        blend=options.blend,
        n_folds=loaded.folds.n_folds,
        classes=list(texts),
    )
    return recipe, texts


@dataclass(frozen=True)
class Export:
    """What an export gathered: the recipe (its boosters read back from their text, as a bundle reads them),
    the boosters' text, and the Ids of the OOF rows (the recipe's ``oofs`` and ``oof_labels`` are in their order)."""

    recipe: Recipe
    booster_texts: dict[int, list[str]]
    oof_ids: list[str]


def _post_processing(sidecar: Sidecar, csv: Path, loaded: Aligned, folds_dir: Path) -> dict:
    """The twins step the CSV went through: its rule and each test image's twin labels (a twins submission), and
    the test groups averaged (``--average-test-twins``)."""
    pairs_path, test_ids = folds_dir / DUPLICATES_FILE, loaded.dataset.test_ids
    found: dict = {}
    if sidecar.twins is not None and Path(sidecar.twins["file"]).name == csv.name:
        dataset, pairs = loaded.dataset, read_twins(pairs_path)
        labelled = twins.Labelled.of(pairs, dataset.train_ids, dataset.train_labels)
        found["twin_rule"] = sidecar.twins["rule"]
        found["twin_labels"] = twins.test_twin_labels(pairs, labelled, test_ids, pairs_path)
    if sidecar.average_test_twins is not None:
        groups = read_groups(groups_path(pairs_path), test_ids, split="test")
        found["groups"] = {i: int(g) for i, g in zip(test_ids, groups) if g >= 0}
    return found


def _gather(
    csv: Path, sidecar: Sidecar, oof_dir: Path, folds_dir: Path, runs_dir: Path, data_dir: Path | None
) -> Export:
    import lightgbm as lgb  # see the imports

    names = _inputs(sidecar, oof_dir)
    loaded = load_aligned(names, oof_dir, folds_dir, data_dir)
    if loaded.folds.hash != sidecar.folds_hash:
        raise ArtifactError(
            f"{sidecar_path(csv)} was made with folds {sidecar.folds_hash}, {folds_dir}/folds.json is "
            f"{loaded.folds.hash}: run python -m solution.make_submission again, then export"
        )
    _check_checkpoints(loaded, runs_dir)
    stack, texts = _boosters(loaded, load_stack_settings(oof_dir)) if sidecar.source == STACK_NAME else (None, {})
    post = _post_processing(sidecar, csv, loaded, folds_dir)
    experiments = {
        p.name: {"config": p.manifest.settings["config"], "n_folds": p.manifest.n_folds} for p in loaded.preds
    }
    manifest = BundleManifest(
        source=sidecar.source,
        rule=sidecar.rule,
        folds_hash=sidecar.folds_hash,
        experiments=experiments,
        cutoffs=sidecar.thresholds,
        at_least_one=bool(sidecar.options["at_least_one"]),
        submission=csv.name,
        csv_sha256=sidecar.csv_sha256,
        provenance=run_info(),
        stack=stack,
        average_test_twins=sidecar.average_test_twins is not None,
        twin_rule=post.get("twin_rule"),
    )
    recipe = Recipe(
        manifest=manifest,
        oofs=[p.oof_probs for p in loaded.preds],
        oof_labels=loaded.labels,
        boosters={c: [lgb.Booster(model_str=t) for t in ts] for c, ts in texts.items()},
        twin_labels=post.get("twin_labels", {}),
        groups=post.get("groups", {}),
    )
    _replay(recipe, [p.test_probs for p in loaded.preds], loaded.dataset.test_ids, csv, oof_dir)
    return Export(recipe, texts, loaded.folds.ids)


def _replay(recipe: Recipe, tests: list[np.ndarray], ids: list[str], csv: Path, oof_dir: Path) -> None:
    """Refuse a recipe that does not turn the recorded test probabilities into the submission's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        _, pred = recipe.apply(recipe.scores(tests), ids)
        write_csv(Path(tmp) / csv.name, ids, pred)
        same = file_hash(Path(tmp) / csv.name) == recipe.manifest.csv_sha256
    if not same:
        raise ArtifactError(
            f"{csv} was not made from the prediction sets now in {oof_dir}/ (a stage ran again since?): run "
            "python -m solution.make_submission again, then export"
        )


def _checkpoint(runs_dir: Path, experiment: str, fold: int) -> Path:
    """A fold's ``checkpoint.pt`` under ``runs_dir`` (a run folder, or a bundle's ``experiments/``), as ``FoldRun``
    names it (its identity, checked when the checkpoint is loaded, plays no part in the name)."""
    return FoldRun(runs_dir, experiment, fold, {}, "").checkpoint


def _check_checkpoints(loaded: Aligned, runs_dir: Path) -> None:
    for p in loaded.preds:
        for k in range(p.manifest.n_folds):
            if not _checkpoint(runs_dir, p.name, k).is_file():
                raise ArtifactError(
                    f"missing {_checkpoint(runs_dir, p.name, k)}: a bundle holds every fold model of {p.name} "
                    "(train the fold, or pass --runs-dir)"
                )


def _fill(export: Export, csv: Path, oof_dir: Path, runs_dir: Path) -> Callable[[Path], None]:
    """The writer of a bundle's files (``files.write_bundle``) for ``export``."""
    recipe, ids = export.recipe, export.oof_ids

    def fill(tmp: Path) -> None:
        shutil.copyfile(sidecar_path(csv), tmp / files.SIDECAR)
        for name, n_folds in ((n, e["n_folds"]) for n, e in recipe.manifest.experiments.items()):
            for k in range(n_folds):
                target = _checkpoint(files.experiments_dir(tmp), name, k)
                target.parent.mkdir(parents=True)
                shutil.copyfile(_checkpoint(runs_dir, name, k), target)
            shutil.copyfile(oof_dir / name / "oof.parquet", files.oof_path(tmp, name))
        files.write_id_table(tmp / files.LABELS, "Target", dict(zip(ids, format_labels(recipe.oof_labels))))
        for c, texts in export.booster_texts.items():
            for k, text in enumerate(texts):
                files.booster_path(tmp, c, k).parent.mkdir(exist_ok=True)
                files.booster_path(tmp, c, k).write_text(text)
        if recipe.manifest.twin_rule is not None:
            moved = recipe.twin_labels
            rows = dict(zip(moved, format_labels(np.array(list(moved.values())))))
            files.write_id_table(tmp / files.TWINS, "Target", rows)
        if recipe.manifest.average_test_twins:
            files.write_id_table(tmp / files.TEST_GROUPS, "group", recipe.groups)

    return fill


def export_bundle(
    out: Path, submission: Path | None, oof_dir: Path, folds_dir: Path, runs_dir: Path, data_dir: Path | None
) -> tuple[BundleManifest, Path]:
    """Write the bundle of ``submission`` (default: the newest in ``submissions/``, a twins file included) to
    ``out``, whole or not at all; returns its manifest and the submission exported.

    Refused, before anything is written, where there is no submission, where a fold checkpoint is missing,
    and where the recipe does not give the submission's bytes from the prediction sets in ``oof_dir``.
    """
    csv = submission or newest_submission(SUBMISSIONS_DIR)
    if csv is None:
        raise ArtifactError(
            f"no submission in {SUBMISSIONS_DIR}/ to export: run python -m solution.make_submission first "
            "(or name one with --submission)"
        )
    if not csv.is_file():
        raise ArtifactError(f"missing submission file: {csv}")
    sidecar = read_sidecar(csv)
    export = _gather(csv, sidecar, oof_dir, folds_dir, runs_dir, data_dir)
    return files.write_bundle(out, export.recipe.manifest, _fill(export, csv, oof_dir, runs_dir)), csv
