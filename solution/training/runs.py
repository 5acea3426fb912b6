"""Run folders: ``runs/<experiment>/fold<k>/``, what makes a saved state reusable, and assembling folds.

A fold folder holds the resolved ``config.yaml``, ``last.pt`` (the last finished
epoch, for resuming), ``checkpoint.pt``, the fold's TTA predictions
(``oof.parquet``, ``test.parquet``, recorded in ``predictions.json``) and, last,
``metrics.json``, whose presence marks the fold as trained. Every saved state
carries the run identity (training config and folds hash) and is reused only
by a run with the same identity.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from solution.artifacts.folds import Folds, open_matching_dataset, read_folds
from solution.artifacts.oof import probs_frame, read_probs_file, write_predictions
from solution.core.classes import PROB_COLUMNS
from solution.core.cli import add_data_args
from solution.core.errors import ArtifactError
from solution.core.fileio import atomic_path, atomic_write_json, atomic_write_parquet, read_json, run_info
from solution.core.ids import align, check_same_ids
from solution.core.workspace import RUNS_DIR
from solution.data.layout import Dataset
from solution.data.stats import StainStats
from solution.training.config import ExperimentConfig, add_override_args, load_config, overrides_from_args
from solution.training.models import build_model, check_backbone

# Config keys that change how a trained model is run, not what it learned.
INFERENCE_KEYS = ("tta", "num_workers", "device")
PREDICTIONS_RECORD = "predictions.json"  # written after a fold's oof/test parquet files: what made them


def fold_dir(runs_dir: Path, cfg: ExperimentConfig, fold: int) -> Path:
    return runs_dir / cfg.name / f"fold{fold}"


def run_identity(cfg: ExperimentConfig, folds: Folds) -> dict[str, Any]:
    """What a fold's saved state must match to be reused: the training config and the folds."""
    training = {k: v for k, v in cfg.to_dict().items() if k not in INFERENCE_KEYS}
    return {"config": training, "folds_hash": folds.hash}


def check_reusable(path: Path, saved: dict[str, Any], cfg: ExperimentConfig, folds: Folds) -> None:
    expected = run_identity(cfg, folds)
    if {k: saved.get(k) for k in expected} != expected:
        raise ArtifactError(
            f"{path} belongs to a run with another config or other folds: "
            f"delete {path.parent.parent}/ to retrain {cfg.name}, or pass --runs-dir"
        )


def save_state(path: Path, **state: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, cfg: ExperimentConfig, folds: Folds) -> dict[str, Any]:
    """A saved state (plain tensors and numbers: ``weights_only``), checked to belong to this run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file fails in many ways inside torch
        raise ArtifactError(
            f"{path} is unreadable or not a state saved by the kit ({type(exc).__name__}: {exc}); "
            f"delete it and train the fold again"
        ) from exc
    check_reusable(path, state, cfg, folds)
    return state


def load_checkpoint(
    cfg: ExperimentConfig, folds: Folds, path: Path, device: torch.device
) -> tuple[nn.Module, StainStats]:
    """A fold's final model and the stain statistics it was trained with."""
    if not path.is_file():
        raise ArtifactError(
            f"missing checkpoint {path}: train the fold first (python -m solution.train --config ... --fold ...)"
        )
    state = load_state(path, cfg, folds)
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device), StainStats.from_dict(state["stats"])


def write_fold_predictions(
    out_dir: Path, cfg: ExperimentConfig, folds: Folds, oof: pd.DataFrame, test: pd.DataFrame
) -> None:
    """A fold's OOF and test predictions, then the record of what made them."""
    atomic_write_parquet(out_dir / "oof.parquet", oof)
    atomic_write_parquet(out_dir / "test.parquet", test)
    atomic_write_json(out_dir / PREDICTIONS_RECORD, {"tta": cfg.tta, **run_identity(cfg, folds)})


def predictions_current(out_dir: Path, cfg: ExperimentConfig, folds: Folds) -> bool:
    """Whether a fold folder holds predictions of this config's model, folds and TTA."""
    record = out_dir / PREDICTIONS_RECORD
    return record.is_file() and read_json(record) == {"tta": cfg.tta, **run_identity(cfg, folds)}


def _fold_predictions(
    cfg: ExperimentConfig, dataset: Dataset, folds: Folds, runs_dir: Path, k: int
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Fold ``k``'s OOF frame, its test probabilities in sample_submission order, and its metrics, all checked."""
    d = fold_dir(runs_dir, cfg, k)
    if not (d / "metrics.json").is_file():
        raise ArtifactError(
            f"fold {k} of {cfg.name} is not trained ({d}/metrics.json missing): "
            f"run python -m solution.train --config ... --fold {k}"
        )
    metrics = read_json(d / "metrics.json")
    check_reusable(d / "metrics.json", metrics, cfg, folds)
    if not predictions_current(d, cfg, folds):
        raise ArtifactError(
            f"{d} holds no predictions of this config with tta {cfg.tta}: "
            "run python -m solution.predict --config ... (it re-predicts such folds)"
        )
    oof = read_probs_file(d / "oof.parquet")
    check_same_ids(folds.ids_of(k), oof["Id"].tolist(), f"fold {k} of folds/folds.csv", f"{d}/oof.parquet")
    test = read_probs_file(d / "test.parquet")
    check_same_ids(dataset.test_ids, test["Id"].tolist(), "sample_submission.csv", f"{d}/test.parquet")
    test_probs = align(test, dataset.test_ids, f"{d}/test.parquet")[list(PROB_COLUMNS)].to_numpy(np.float32)
    return oof, test_probs, metrics


def assemble(cfg: ExperimentConfig, dataset: Dataset, folds: Folds, runs_dir: Path, oof_dir: Path) -> Path:
    """Join the fold predictions into ``oof/<name>/`` and write its manifest; returns that folder."""
    oof_parts, test_parts, fold_metrics = [], [], []
    for k in range(folds.n_folds):
        oof, test_probs, metrics = _fold_predictions(cfg, dataset, folds, runs_dir, k)
        oof_parts.append(oof)
        test_parts.append(test_probs)
        keys = ("val_macro_f1_at_0.5", "val_macro_f1_fitted", "val_loss")
        fold_metrics.append({"fold": k, **{key: metrics[key] for key in keys if key in metrics}})
    oof_all = align(pd.concat(oof_parts), folds.ids, f"{runs_dir / cfg.name}/fold*/oof.parquet")
    test_all = probs_frame(dataset.test_ids, np.mean(test_parts, axis=0))
    manifest = {
        "experiment": cfg.name,
        "config": cfg.to_dict(),
        "folds_hash": folds.hash,
        "n_folds": folds.n_folds,
        "data_dir": str(dataset.root.resolve()),
        "tta": cfg.tta,
        "fold_metrics": fold_metrics,
        **run_info(),
    }
    out = oof_dir / cfg.name
    write_predictions(out, oof_all, test_all, manifest)
    return out


def add_experiment_args(parser: argparse.ArgumentParser) -> None:
    """The options that locate an experiment and its inputs, shared by train and predict."""
    parser.add_argument("--config", required=True, type=Path, help="experiment YAML (configs/<set>/<experiment>.yaml)")
    add_data_args(parser)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="folder of the fold runs")
    add_override_args(parser)


def load_experiment(args: argparse.Namespace) -> tuple[ExperimentConfig, Folds, Dataset]:
    """The resolved config, the folds and the dataset they were made from, checked against each other."""
    cfg = load_config(args.config, overrides_from_args(args))
    check_backbone(cfg.backbone)  # before any folds, data or cache work
    folds = read_folds(args.folds_dir)
    return cfg, folds, open_matching_dataset(folds, args.data)
