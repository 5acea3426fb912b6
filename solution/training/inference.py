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
from solution.training.tta import TTA_MERGES, crop_windows, tta_views


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    loader: DataLoader,
    tta: str,
    numerics: Numerics,
    transform: BatchTransform | None = None,
    crop: int = 0,
    crops: int = 1,
    merge: str = "mean",
) -> np.ndarray:
    """(N, 28) sigmoid probabilities, merged by ``merge`` over the TTA views of each of the ``crops`` windows
    of size ``crop`` (0: the whole image; ``solution.training.tta``), all views of a window in one forward,
    on ``numerics``' device in its precision and layout (the model is expected in that layout too).

    ``transform`` turns the loader's uint8 stains into model input on the device (None: batches already are).
    """
    model.eval()
    merge_views = TTA_MERGES[merge]
    out = []
    for x, _ in loader:
        x = x.to(numerics.device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        windows = crop_windows(x, crop, crops)
        probs = [_view_probs(model, tta_views(w, tta, numerics.memory_format), len(x), numerics) for w in windows]
        out.append(merge_views(torch.cat(probs)).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _view_probs(model: nn.Module, views: torch.Tensor, batch: int, numerics: Numerics) -> torch.Tensor:
    """(V, B, K) probabilities of the (V * B, ...) views of a batch of ``batch`` images."""
    with numerics.autocast():
        logits = model(views)
    return torch.sigmoid(logits.float()).view(len(views) // batch, batch, -1)


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
    (the test cache plan's ``files_key``), recorded with the predictions."""
    _, val_pos = folds.split(dataset.train_ids, run.fold)
    oof = predict_images(cfg, model, stats, images, val_pos, numerics)
    test = predict_images(cfg, model, stats, test_images, np.arange(len(test_images)), numerics)
    val_ids = [dataset.train_ids[i] for i in val_pos]
    run.write_predictions(probs_frame(val_ids, oof), probs_frame(dataset.test_ids, test), test_files)


def predict_images(
    cfg: ExperimentConfig,
    model: nn.Module,
    stats: StainStats,
    images: np.ndarray,
    positions: np.ndarray,
    numerics: Numerics,
) -> np.ndarray:
    """(len(positions), 28) float32 TTA probabilities of the cached ``images`` at ``positions``, in
    ``cfg.batch_size`` batches: the same batches, hence the same bits, wherever a fold model predicts the test
    set (at the end of training, ``python -m solution.predict``, a bundle). The model is put in ``numerics``'
    layout."""
    model = model.to(memory_format=numerics.memory_format)
    # the whole image, normalised (as in training, before any crop), then the TTA's windows of it
    transform = BatchTransform(channel_matrix(cfg.channels), stats, numerics.channels_last, cfg.normalize)
    loader = make_loader(images, positions, cfg.batch_size, cfg.num_workers)
    return predict_probs(model, loader, cfg.tta, numerics, transform, cfg.crop, cfg.tta_crops, cfg.tta_merge)
