"""Test-time-augmented prediction of a trained fold model on its validation images and the test set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from solution.artifacts.folds import Folds
from solution.artifacts.oof import probs_frame
from solution.artifacts.runs import FoldRun
from solution.data.batch import BatchTransform
from solution.data.channels import channel_matrix
from solution.data.layout import Dataset
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.training.config import ExperimentConfig
from solution.training.numerics import Numerics
from solution.training.tta import tta_views


@torch.no_grad()
def predict_probs(
    model: nn.Module, loader: DataLoader, tta: str, numerics: Numerics, transform: BatchTransform | None = None
) -> np.ndarray:
    """(N, 28) sigmoid probabilities, averaged over the TTA views, all views of a batch in one forward, on
    ``numerics``' device in its precision and layout (the model is expected in that layout too).

    ``transform`` turns the loader's uint8 stains into model input on the device (None: batches already are).
    """
    model.eval()
    out = []
    for x, _ in loader:
        x = x.to(numerics.device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        views = tta_views(x, tta, numerics.memory_format)
        with numerics.autocast():
            logits = model(views)
        probs = torch.sigmoid(logits.float()).view(len(views) // len(x), len(x), -1).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def predict_fold(
    cfg: ExperimentConfig,
    model: nn.Module,
    stats: StainStats,
    dataset: Dataset,
    images: np.ndarray,
    test_images: np.ndarray,
    test_files: str,
    folds: Folds,
    run: FoldRun,
    numerics: Numerics,
) -> None:
    """Write the fold's TTA predictions: ``oof.parquet`` for its validation images, ``test.parquet``; the model
    runs on ``numerics``' device, in its precision.

    ``images`` and ``test_images`` are the dataset's cached splits at ``cfg.image_size`` (opened once by
    the caller: naming a cache means a look at every source file), ``test_files`` the key of the test files
    (the test cache plan's ``files_key``), recorded with the predictions. The model is put in ``numerics``'
    layout."""
    model = model.to(memory_format=numerics.memory_format)
    transform = BatchTransform(channel_matrix(cfg.channels), stats, channels_last=numerics.channels_last)

    def predict(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
        loader = make_loader(images, positions, cfg.batch_size, cfg.num_workers)
        return predict_probs(model, loader, cfg.tta, numerics, transform)

    _, val_pos = folds.split(dataset.train_ids, run.fold)
    oof = predict(images, val_pos)
    test = predict(test_images, np.arange(len(test_images)))
    val_ids = [dataset.train_ids[i] for i in val_pos]
    run.write_predictions(probs_frame(val_ids, oof), probs_frame(dataset.test_ids, test), test_files)
