"""LightGBM stacking over the OOF probabilities of several experiments.

One binary LightGBM booster per class and fold. It is trained on the other
folds' OOF rows, so each stacked OOF prediction comes from a model that never
saw that image (nor did the first-level models whose outputs it reads); test
predictions are the mean over the fold models. Inside the training folds, a
fixed 10 % of the rows (``EARLY_STOP_FRACTION``, at least one) stops the
boosting early.

Features (``FEATURE_SETS``), for class c:
- ``class``: that class's probability in every experiment, their mean and max
  over experiments, and the image's predicted label count (of the mean, at 0.5).
- ``all``: every experiment's 28 probabilities, the per-class mean and max over
  experiments, and the label count: one matrix for every class.

Speed: each feature matrix is binned once into an ``lgb.Dataset`` and the fold
and early-stopping sets are ``subset``s of it, so no fold or class bins again
(``all`` shares one Dataset across the classes, changing only its labels).
Classes with fewer than ``mean_below`` positive OOF rows cannot be fitted
and fall back to the plain mean of the experiments; the result says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from solution.artifacts.oof import Manifest, list_experiments, load_aligned, probs_frame, write_predictions
from solution.core.errors import ArtifactError, ConfigError
from solution.core.fileio import run_info
from solution.core.registry import Registry
from solution.core.workspace import STACK_NAME
from solution.scoring.metrics import macro_f1
from solution.scoring.thresholds import fitted_macro_f1

if TYPE_CHECKING:
    # LightGBM, with scikit-learn and SciPy, takes most of a second to import: the functions that fit or read
    # boosters import it, so that ``predict`` (without a stack) and ``stack --help`` start without it.
    import lightgbm as lgb

LGB_PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.2,  # with early stopping: a few dozen rounds
    "num_leaves": 8,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
MAX_ROUNDS = 400
EARLY_STOP_ROUNDS = 20
EARLY_STOP_FRACTION = 0.1
MEAN_BELOW = 10


def _summaries(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and max over experiments (N, C) and the predicted label count of the mean (N, 1)."""
    mean = probs.mean(axis=0)
    return mean, probs.max(axis=0), (mean > 0.5).sum(axis=1, keepdims=True).astype(np.float32)


def class_features(probs: np.ndarray, c: int) -> np.ndarray:
    """(N, E + 3): class c's probability in each experiment, their mean and max, the label count."""
    mean, top, count = _summaries(probs)
    return np.column_stack([probs[:, :, c].T, mean[:, c], top[:, c], count])


def all_features(probs: np.ndarray, c: int) -> np.ndarray:
    """(N, 28 E + 57): every probability, every class's mean and max, the label count (the same for every c)."""
    mean, top, count = _summaries(probs)
    return np.column_stack([np.concatenate(list(probs), axis=1), mean, top, count])


FEATURE_SETS: Registry[Callable[[np.ndarray, int], np.ndarray]] = Registry(
    "--features", {"class": class_features, "all": all_features}
)
SHARED_ACROSS_CLASSES = {"all"}  # feature sets whose matrix does not depend on the class


@dataclass(frozen=True)
class Stacked:
    oof: np.ndarray  # (N, C) float32
    test: np.ndarray  # (T, C) float32
    fallback: list[int]  # classes predicted by the plain mean: too few positives to fit
    boosters: dict[int, list[lgb.Booster]]  # per fitted class, its booster of each fold, in fold order


def _early_stop_rows(train_rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training rows split into fitting and early-stopping rows, in order: ``EARLY_STOP_FRACTION`` of
    them rounded, at least one (LightGBM refuses an empty set) and never all (a fold trains on two or more)."""
    n_held = min(len(train_rows) - 1, max(1, round(EARLY_STOP_FRACTION * len(train_rows))))
    held = np.zeros(len(train_rows), dtype=bool)
    held[np.random.default_rng(seed).choice(len(train_rows), n_held, replace=False)] = True
    return train_rows[~held], train_rows[held]


def _fit_fold(data: lgb.Dataset, fit_rows: np.ndarray, stop_rows: np.ndarray, params: dict) -> lgb.Booster:
    import lightgbm as lgb  # see the imports

    train = data.subset(fit_rows.tolist())
    valid = data.subset(stop_rows.tolist())
    return lgb.train(
        params,
        train,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)],
    )


def _predict(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """The booster's probabilities at its best iteration (a booster read back from its text holds only those
    trees, and predicts with all of them)."""
    return np.asarray(booster.predict(x, num_iteration=booster.best_iteration))


def predict_stacked(boosters: dict[int, list[lgb.Booster]], test_probs: np.ndarray, features: str) -> np.ndarray:
    """(T, C) float32 stacked probabilities of (E, T, C) experiments' probabilities: per fitted class the mean
    over its fold boosters, every other class the plain mean. ``stack`` predicts its test rows with it, and so
    does a bundle (``solution.ensemble.offline``) from the boosters saved in it, so the two agree to the bit."""
    make = FEATURE_SETS[features]
    test = test_probs.mean(axis=0).astype(np.float32)
    shared = make(test_probs, 0) if features in SHARED_ACROSS_CLASSES else None
    for c, fold_boosters in boosters.items():
        x_test = make(test_probs, c) if shared is None else shared
        test[:, c] = 0
        for booster in fold_boosters:
            test[:, c] += _predict(booster, x_test) / len(fold_boosters)
    return test


def with_mean(blend: float, stacked: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """What the stack writes: ``blend`` x its LightGBM probabilities + (1 - ``blend``) x the mean of the (E, N, C)
    experiments' ``probs``."""
    return blend * stacked + (1 - blend) * probs.mean(axis=0)


def stack(
    oof_probs: np.ndarray,
    labels: np.ndarray,
    fold: np.ndarray,
    test_probs: np.ndarray,
    features: str = "class",
    seed: int = 0,
    n_jobs: int = 1,
    mean_below: int = MEAN_BELOW,
) -> Stacked:
    """Stacked OOF and test probabilities from (E, N, C) OOF and (E, T, C) test probabilities of E experiments."""
    make = FEATURE_SETS[features]
    n_classes, n_folds = labels.shape[1], int(fold.max()) + 1
    oof = oof_probs.mean(axis=0).astype(np.float32)
    fallback = [c for c in range(n_classes) if labels[:, c].sum() < mean_below]
    import lightgbm as lgb  # see the imports

    params = {**LGB_PARAMS, "seed": seed, "num_threads": n_jobs}
    shared_oof = make(oof_probs, 0) if features in SHARED_ACROSS_CLASSES else None  # one matrix for every class
    shared_data = (
        None if shared_oof is None else lgb.Dataset(shared_oof, params=params, free_raw_data=False).construct()
    )
    boosters: dict[int, list[lgb.Booster]] = {}
    for c in (c for c in range(n_classes) if c not in fallback):
        x_all = make(oof_probs, c) if shared_oof is None else shared_oof
        data = shared_data or lgb.Dataset(x_all, params=params, free_raw_data=False).construct()
        data.set_label(labels[:, c])
        boosters[c] = []
        for k in range(n_folds):
            fit_rows, stop_rows = _early_stop_rows(np.flatnonzero(fold != k), seed + k)
            val = np.flatnonzero(fold == k)
            boosters[c].append(_fit_fold(data, fit_rows, stop_rows, params))
            oof[val, c] = _predict(boosters[c][-1], x_all[val])
    test = predict_stacked(boosters, test_probs, features)
    return Stacked(oof=oof, test=test, fallback=fallback, boosters=boosters)


@dataclass(frozen=True)
class StackOptions:
    """What ``python -m solution.stack`` asks of ``stack_experiments``; ``blend`` weighs LightGBM against the mean."""

    features: str = "class"
    blend: float = 0.5
    mean_below: int = MEAN_BELOW
    seed: int = 0
    n_jobs: int = 1


def _score_row(name: str, probs: np.ndarray, labels: np.ndarray) -> str:
    return f"{name:<28}{macro_f1(labels, probs > 0.5):>10.4f}{fitted_macro_f1(probs, labels):>12.4f}"


def stack_experiments(
    names: list[str] | None, oof_dir: Path, folds_dir: Path, data_dir: Path | None, options: StackOptions
) -> str:
    """Stack the named prediction sets (default: every experiment under ``oof_dir``) into ``oof_dir/stack/``:
    ``blend`` x LightGBM + (1 - ``blend``) x their plain mean. Returns the table of OOF macro-F1 to print."""
    names = names or list_experiments(oof_dir)
    if STACK_NAME in names:
        raise ConfigError(
            f"--experiments: {STACK_NAME!r} is the stacker's own output ({oof_dir / STACK_NAME}/), which this run "
            "writes: name the experiments to stack"
        )
    if not names:
        raise ArtifactError(f"no experiments in {oof_dir}/: run scripts/train_folds.sh first")
    loaded = load_aligned(names, oof_dir, folds_dir, data_dir)
    labels, folds = loaded.labels, loaded.folds
    oof_probs = np.stack([p.oof_probs for p in loaded.preds])
    test_probs = np.stack([p.test_probs for p in loaded.preds])
    stacked = stack(
        oof_probs, labels, folds.fold, test_probs, options.features, options.seed, options.n_jobs, options.mean_below
    )
    oof = with_mean(options.blend, stacked.oof, oof_probs)
    test = with_mean(options.blend, stacked.test, test_probs)
    settings = {
        "inputs": names,
        "options": asdict(options),
        "lightgbm_params": LGB_PARAMS,
        "classes_kept_at_the_mean": stacked.fallback,
    }
    manifest = Manifest(
        name=STACK_NAME,
        kind="stack",
        folds_hash=folds.hash,
        n_folds=folds.n_folds,
        data_dir=str(loaded.dataset.root.resolve()),
        settings=settings,
        provenance=run_info(),
    )
    out = oof_dir / STACK_NAME
    write_predictions(out, probs_frame(folds.ids, oof), probs_frame(loaded.dataset.test_ids, test), manifest)
    rows = [_score_row(p.name, p.oof_probs, labels) for p in loaded.preds]
    if len(loaded.preds) > 1:
        rows.append(_score_row("mean of experiments", oof_probs.mean(axis=0), labels))
    rows += [
        _score_row("LightGBM stack", stacked.oof, labels),
        _score_row(f"stack written ({options.blend:g} LightGBM)", oof, labels),
    ]
    lines = [
        f"\nOOF macro-F1 ({len(labels)} images, {folds.n_folds} folds; "
        "'fitted' = per-class cut-offs fitted on these OOF rows)",
        f"{'predictions':<28}{'@0.5':>10}{'fitted':>12}",
        *rows,
    ]
    if stacked.fallback:
        lines.append(
            f"classes with fewer than {options.mean_below} positive OOF rows keep the plain mean: "
            f"{', '.join(map(str, stacked.fallback))}"
        )
    return "\n".join([*lines, f"wrote {out}/oof.parquet, test.parquet, manifest.json"])
