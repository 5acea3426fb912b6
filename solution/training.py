"""Training one experiment on one fold: plain functions, as in timm's ``train.py``.

``train_fold`` writes to ``runs/<name>/fold<k>/`` (see ``solution.runs``):
``last.pt`` after every epoch, so a killed run resumes from the last finished
epoch, then ``checkpoint.pt``, the fold's TTA predictions and, last,
``metrics.json``, whose presence marks the fold as done.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from solution import thresholds
from solution.config import ExperimentConfig, save_config
from solution.data.cache import load_images
from solution.data.channels import channel_matrix
from solution.data.layout import Dataset
from solution.data.loader import make_loader
from solution.data.transforms import train_transform
from solution.distributed import Context, mean_over_ranks
from solution.fileio import atomic_write_json, read_json
from solution.inference import predict_fold
from solution.losses import LossFn, get_loss
from solution.metrics import macro_f1
from solution.models import build_model
from solution.optim import make_optimizer
from solution.runs import check_reusable, fold_dir, run_identity, save_state
from solution.splits import Folds

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ctx: Context,
    desc: str,
) -> float:
    """One pass over this rank's share of the training images; returns the mean loss over all ranks."""
    model.train()
    device = ctx.device
    total, count = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if ctx.is_main else True)
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(x)
        count += len(x)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return mean_over_ranks(ctx, total, count)


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, loss_fn: LossFn, device: torch.device) -> dict[str, float]:
    """Validation loss and macro-F1, at 0.5 and at per-class cut-offs fitted on this fold (optimistic)."""
    model.eval()
    probs, targets, total = [], [], 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
        total += loss_fn(logits, y).item() * len(x)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, t = np.concatenate(probs), np.concatenate(targets).astype(np.uint8)
    return {
        "val_loss": total / len(p),
        "val_macro_f1_at_0.5": macro_f1(t, p > 0.5),
        "val_macro_f1_fitted": thresholds.fitted_macro_f1(p, t),
    }


def _resume(
    path: Path, cfg: ExperimentConfig, folds: Folds, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler
) -> tuple[int, list[dict[str, Any]]]:
    """Restore the last finished epoch from ``last.pt``, if any: (epochs done, their metrics). Every rank loads it."""
    if not path.is_file():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=False)
    check_reusable(path, state, cfg, folds)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["epoch"], state["history"]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def epoch_summary(cfg: ExperimentConfig, m: dict[str, float]) -> str:
    return (
        f"epoch {m['epoch']}/{cfg.epochs}: train loss {m['train_loss']:.4f}  val loss {m['val_loss']:.4f}  "
        f"val macro-F1 {m['val_macro_f1_at_0.5']:.4f} @0.5, {m['val_macro_f1_fitted']:.4f} fitted  "
        f"({m['seconds']:.1f}s)"
    )


def _loaders(
    cfg: ExperimentConfig, dataset: Dataset, folds: Folds, fold: int, ctx: Context
) -> tuple[DataLoader, DataLoader]:
    train_pos, val_pos = folds.split(dataset.train_ids, fold)
    images = load_images(dataset, "train", dataset.train_ids, cfg.image_size)
    common = dict(matrix=channel_matrix(cfg.channels), batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    train_loader = make_loader(
        images,
        train_pos,
        labels=dataset.train_labels,
        transform=train_transform(cfg.augment),
        shuffle=True,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        **common,
    )
    return train_loader, make_loader(images, val_pos, labels=dataset.train_labels, **common)


def train_fold(
    cfg: ExperimentConfig, dataset: Dataset, folds: Folds, fold: int, runs_dir: Path, ctx: Context = Context()
) -> dict[str, Any]:
    """Train (or resume) one fold, predict its validation and test images with TTA; returns its metrics.

    Under torchrun each rank trains on its share of every epoch (DistributedSampler)
    and DDP averages the gradients; rank 0 validates, saves and predicts.
    """
    out = fold_dir(runs_dir, cfg, fold)
    if (out / "metrics.json").is_file():
        done = read_json(out / "metrics.json")
        check_reusable(out / "metrics.json", done, cfg, folds)
        log.info(f"{cfg.name} fold {fold}: already trained ({out}/metrics.json), skipping")
        return done
    if ctx.is_main:
        save_config(cfg, out / "config.yaml")
        load_images(dataset, "train", dataset.train_ids, cfg.image_size)  # build the cache once, not once per rank
    ctx.barrier()
    seed_everything(cfg.seed + fold)
    train_loader, val_loader = _loaders(cfg, dataset, folds, fold, ctx)
    loss_fn = get_loss(cfg.loss)
    model = build_model(cfg).to(ctx.device)
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    total_steps = cfg.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.2)
    start_epoch, history = _resume(out / "last.pt", cfg, folds, model, optimizer, scheduler)
    if start_epoch:
        log.info(f"{out}: resuming after epoch {start_epoch}")
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        desc = f"{cfg.name} f{fold} e{epoch + 1}/{cfg.epochs}"
        train_loss = train_one_epoch(model, train_loader, loss_fn, optimizer, scheduler, ctx, desc)
        if ctx.is_main:
            val = validate(_unwrap(model), val_loader, loss_fn, ctx.device)
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, **val, "seconds": time.time() - t0}
            history.append(metrics)
            log.info(f"{cfg.name} fold {fold} {epoch_summary(cfg, metrics)}")
            state = {
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            save_state(out / "last.pt", **state, epoch=epoch + 1, history=history, **run_identity(cfg, folds))
        ctx.barrier()

    final: dict[str, Any] = {}
    if ctx.is_main:
        save_state(out / "checkpoint.pt", model=_unwrap(model).state_dict(), **run_identity(cfg, folds))
        predict_fold(cfg, _unwrap(model), dataset, folds, fold, out, ctx.device)
        val = {k: v for k, v in history[-1].items() if k.startswith("val_")}
        final = {
            "fold": fold,
            **run_identity(cfg, folds),
            "world_size": ctx.world_size,
            "steps_per_epoch": len(train_loader),
            **val,
            "history": history,
        }
        atomic_write_json(out / "metrics.json", final)
        (out / "last.pt").unlink(missing_ok=True)
    ctx.barrier()
    return final
