"""One experiment as the commands see it: its config, folds and dataset, its fold runs, and predicting them.

``python -m solution.train`` and ``python -m solution.predict`` share the options that locate an experiment
and its inputs; ``predict_experiment`` re-predicts the folds whose predictions are missing or were made with
another TTA or from other test files, then assembles ``oof/<experiment>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from solution.artifacts.folds import Folds, open_matching_dataset, read_folds
from solution.artifacts.runs import FoldRun, assemble, fold_mean
from solution.core.cli import add_data_args
from solution.core.workspace import RUNS_DIR
from solution.data.cache import load_images, make_plan, open_plan
from solution.data.layout import Dataset
from solution.data.stats import StainStats
from solution.training.config import ExperimentConfig, add_override_args, load_config, overrides_from_args
from solution.training.distributed import resolve_device
from solution.training.inference import predict_fold, predict_images
from solution.training.models import build_model, check_backbone
from solution.training.numerics import autotune_convolutions, resolve_numerics
from solution.training.tta import tta_label


def fold_run(runs_dir: Path, cfg: ExperimentConfig, folds: Folds, fold: int) -> FoldRun:
    """The run folder of fold ``fold`` of ``cfg`` trained on ``folds``."""
    tta = tta_label(cfg.tta, cfg.tta_crops, cfg.tta_merge)
    return FoldRun(runs_dir, cfg.name, fold, cfg.run_identity(folds.hash), tta)


def load_checkpoint(cfg: ExperimentConfig, run: FoldRun, device: torch.device) -> tuple[nn.Module, StainStats]:
    """A fold's final model and the stain statistics it was trained with (no pretrained weights fetched: the
    checkpoint replaces them)."""
    state = run.load_state(run.checkpoint)
    model = build_model(cfg, weights=False)
    model.load_state_dict(state["model"])
    return model.to(device), StainStats.from_dict(state["stats"])


def predict_experiment(
    cfg: ExperimentConfig, folds: Folds, dataset: Dataset, runs_dir: Path, oof_dir: Path, redo: bool = False
) -> Path:
    """Predict (with ``cfg``'s TTA) every fold whose predictions are not current (missing, of another TTA, or of
    other test files), or all with ``redo``, and assemble ``oof_dir/<experiment>/``; returns that folder."""
    runs = [fold_run(runs_dir, cfg, folds, k) for k in range(folds.n_folds)]
    test = make_plan(dataset, "test", dataset.test_ids, cfg.image_size)  # names the test files as they are now
    todo = [run for run in runs if redo or not run.predictions_current(test.files_key)]
    if todo:  # the cached images, opened once for every fold
        numerics = resolve_numerics(cfg.precision, resolve_device(cfg.device))
        autotune_convolutions(numerics.device)
        images = load_images(dataset, "train", dataset.train_ids, cfg.image_size)
        test_images = open_plan(test)
        for run in todo:
            model, stats = load_checkpoint(cfg, run, numerics.device)
            predict_fold(cfg, model, stats, dataset, images, test_images, test.files_key, folds, run, numerics)
    return assemble(runs, cfg.to_dict(), dataset, folds, oof_dir, test.files_key)


def predict_test(cfg: ExperimentConfig, runs: list[FoldRun], dataset: Dataset, cache_dir: Path) -> np.ndarray:
    """(M, 28) float32: the mean over the fold models of ``runs`` of their TTA probabilities of the dataset's
    test images (cached at ``cfg.image_size`` in ``cache_dir``), as ``assemble`` computes an experiment's test
    probabilities from its folds' (a bundle's runs: ``solution.offline``)."""
    numerics = resolve_numerics(cfg.precision, resolve_device(cfg.device))
    autotune_convolutions(numerics.device)
    images = load_images(dataset, "test", dataset.test_ids, cfg.image_size, cache_dir)
    parts = []
    for run in runs:
        model, stats = load_checkpoint(cfg, run, numerics.device)
        parts.append(predict_images(cfg, model, stats, images, np.arange(len(images)), numerics))
    return fold_mean(parts)


def add_experiment_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The options that locate an experiment and its inputs, shared by train and predict (whose ``--bundle``
    replaces ``--config``)."""
    parser.add_argument(
        "--config", required=required, type=Path, help="experiment YAML (configs/<set>/<experiment>.yaml)"
    )
    add_data_args(parser)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="folder of the fold runs")
    add_override_args(parser)


def load_experiment(args: argparse.Namespace) -> tuple[ExperimentConfig, Folds, Dataset]:
    """The resolved config, the folds and the dataset they were made from, checked against each other."""
    cfg = load_config(args.config, overrides_from_args(args))
    check_backbone(cfg.backbone)  # before any folds, data or cache work
    folds = read_folds(args.folds_dir)
    return cfg, folds, open_matching_dataset(folds, args.data)
