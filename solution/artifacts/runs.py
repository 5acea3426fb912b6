"""Run folders ``runs/<experiment>/fold<k>/``: one ``FoldRun`` owns every file name in one, and assembling a
finished experiment's folds into its prediction set ``oof/<experiment>/``.

Every saved state and record carries the run identity (the training config and the folds hash) and is reused
only by a run with the same identity. ``metrics.json``, written last, marks a fold as trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solution.artifacts.folds import Folds
from solution.artifacts.oof import Manifest, probs_frame, read_probs_file, write_predictions
from solution.core.classes import PROB_COLUMNS
from solution.core.errors import ArtifactError
from solution.core.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    read_json,
    run_info,
)
from solution.core.ids import align, check_same_ids
from solution.data.layout import Dataset

FOLD_DIR = re.compile(r"fold(\d+)")
HISTORY_FILE = "history.csv"
METRIC_KEYS = ("val_macro_f1_at_0.5", "val_macro_f1_fitted", "val_loss")  # per fold, into the manifest


@dataclass(frozen=True)
class FoldRun:
    """The folder of one fold of one experiment and everything in it.

    ``identity`` is what every saved state must match (the training config and the folds hash); ``tta`` is
    what the fold's predictions must have been made with to count as current, as must the test files: the
    methods on predictions take the ``files_key`` of the test split's cache plan (``solution.data.cache``: the
    test Ids and every test file's name, size and mtime), so that predictions of other test files are redone.
    """

    runs_dir: Path
    experiment: str
    fold: int
    identity: dict[str, Any]
    tta: str

    @property
    def dir(self) -> Path:
        return self.runs_dir / self.experiment / f"fold{self.fold}"

    config = property(lambda self: self.dir / "config.yaml")  # the resolved config, as trained
    last = property(lambda self: self.dir / "last.pt")  # the last finished epoch, to resume from
    best = property(lambda self: self.dir / "best.pt")  # the best epoch so far
    checkpoint = property(lambda self: self.dir / "checkpoint.pt")  # the best epoch's weights, once trained
    metrics = property(lambda self: self.dir / "metrics.json")  # written last: the fold is trained
    history = property(lambda self: self.dir / HISTORY_FILE)  # one row per epoch
    tensorboard = property(lambda self: self.dir / "tb")
    oof = property(lambda self: self.dir / "oof.parquet")  # TTA predictions of the fold's validation images
    test = property(lambda self: self.dir / "test.parquet")  # ... and of the test images
    predictions_record = property(lambda self: self.dir / "predictions.json")  # what made them: written after

    def lock(self, rank: int) -> Path:
        return self.dir / f"rank{rank}.lock"

    @property
    def name(self) -> str:
        return f"fold {self.fold} of {self.experiment} ({self.dir})"

    def check_reusable(self, path: Path, saved: dict[str, Any]) -> None:
        """Refuse a saved state or record that another config or other folds made."""
        if {k: saved.get(k) for k in self.identity} != self.identity:
            raise ArtifactError(
                f"{path} belongs to a run with another config or other folds: "
                f"delete {self.dir.parent}/ to retrain {self.experiment}, or pass --runs-dir"
            )

    def save_state(self, path: Path, **state: Any) -> None:
        """A state (tensors and plain numbers) with the run identity, written atomically.

        A failed write (a full disk) is the ``OSError`` that ``atomic_path`` names ``path`` in: torch writes
        through a Python file, whose error its writer's closing then masks with a ``RuntimeError`` naming no
        file ("[enforce fail at inline_container.cc:672]", as it fails given a path), so the error is unmasked."""
        import torch  # here, not at the top: the report and the ensemble read run folders without torch

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            try:
                torch.save({**state, **self.identity}, fh)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise

    def load_state(self, path: Path) -> dict[str, Any]:
        """A saved state (plain tensors and numbers: ``weights_only``), checked to belong to this run."""
        import torch

        if not path.is_file():
            raise ArtifactError(
                f"missing {path}: train the fold first (python -m solution.train --config ... --fold {self.fold})"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file fails in many ways inside torch
            raise ArtifactError(
                f"{path} is unreadable or not a state saved by the kit ({type(exc).__name__}: {exc}); "
                f"delete it and train the fold again"
            ) from exc
        self.check_reusable(path, state)
        return state

    def trained_metrics(self) -> dict[str, Any] | None:
        """The final record of a fold that finished training with this identity; None where it has not (a record
        of another identity is an error)."""
        return self.read_metrics() if self.metrics.is_file() else None

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics.is_file():
            raise ArtifactError(
                f"{self.name} is not trained ({self.metrics} missing): "
                f"run python -m solution.train --config ... --fold {self.fold}"
            )
        metrics = read_json(self.metrics)
        self.check_reusable(self.metrics, metrics)
        return metrics

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """The fold's final record, with the run identity; then the resume state is no longer needed."""
        atomic_write_json(self.metrics, {**metrics, **self.identity})
        self.last.unlink(missing_ok=True)

    def write_history(self, history: list[dict[str, float]]) -> None:
        atomic_write_text(self.history, pd.DataFrame(history).to_csv(index=False))

    def write_predictions(self, oof: pd.DataFrame, test: pd.DataFrame, test_files: str) -> None:
        """The fold's OOF and test predictions (of the test files keyed ``test_files``), then the record of what
        made them."""
        atomic_write_parquet(self.oof, oof)
        atomic_write_parquet(self.test, test)
        atomic_write_json(self.predictions_record, self._record(test_files))

    def predictions_current(self, test_files: str) -> bool:
        """Whether the folder holds predictions of this run's model, folds and TTA, of the test files keyed
        ``test_files``."""
        record = self.predictions_record
        return record.is_file() and read_json(record) == self._record(test_files)

    def _record(self, test_files: str) -> dict[str, Any]:
        return {"tta": self.tta, "test_files": test_files, **self.identity}

    def read_predictions(self, folds: Folds, test_ids: list[str], test_files: str) -> tuple[pd.DataFrame, np.ndarray]:
        """The fold's OOF frame and its test probabilities in ``test_ids`` order, checked against the folds."""
        if not self.predictions_current(test_files):
            raise ArtifactError(
                f"{self.dir} holds no predictions of this config with tta {self.tta} of the test files as they are: "
                "run python -m solution.predict --config ... (it re-predicts such folds)"
            )
        oof = read_probs_file(self.oof)
        check_same_ids(folds.ids_of(self.fold), oof["Id"].tolist(), f"fold {self.fold} of {folds.csv}", self.oof)
        test = read_probs_file(self.test)
        check_same_ids(test_ids, test["Id"].tolist(), "sample_submission.csv", str(self.test))
        return oof, align(test, test_ids, str(self.test))[list(PROB_COLUMNS)].to_numpy(np.float32)


def experiment_folds(runs_dir: Path, experiment: str) -> dict[int, Path]:
    """The fold folders found under ``runs_dir/experiment/``, by fold number (for reading, whatever made them)."""
    exp_dir = runs_dir / experiment
    found = [(int(m[1]), p) for p in exp_dir.iterdir() if p.is_dir() and (m := FOLD_DIR.fullmatch(p.name))]
    return dict(sorted(found))


def fold_mean(parts: list[np.ndarray]) -> np.ndarray:
    """(M, 28) float32: an experiment's test probabilities, the mean of its folds' (M, 28) float32 ones in fold
    order; ``assemble`` writes it and a bundle (``solution.offline``) computes it again, to the bit."""
    return np.mean(parts, axis=0).astype(np.float32)


def assemble(
    runs: list[FoldRun], config: dict[str, Any], dataset: Dataset, folds: Folds, oof_dir: Path, test_files: str
) -> Path:
    """Join every fold's predictions (of the test files keyed ``test_files``) into ``oof_dir/<experiment>/`` and
    write its manifest; returns that folder."""
    oof_parts, test_parts, fold_metrics = [], [], []
    for run in runs:
        metrics = run.read_metrics()
        oof, test_probs = run.read_predictions(folds, dataset.test_ids, test_files)
        oof_parts.append(oof)
        test_parts.append(test_probs)
        fold_metrics.append({"fold": run.fold, **{key: metrics[key] for key in METRIC_KEYS if key in metrics}})
    name = runs[0].experiment
    oof_all = align(pd.concat(oof_parts), folds.ids, f"{runs[0].runs_dir / name}/fold*/oof.parquet")
    test_all = probs_frame(dataset.test_ids, fold_mean(test_parts))
    manifest = Manifest(
        name=name,
        kind="experiment",
        folds_hash=folds.hash,
        n_folds=folds.n_folds,
        data_dir=str(dataset.root.resolve()),
        settings={"config": config, "tta": runs[0].tta},
        fold_metrics=tuple(fold_metrics),
        provenance=run_info(),
    )
    out = oof_dir / name
    write_predictions(out, oof_all, test_all, manifest)
    return out
