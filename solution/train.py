"""Train one experiment on one or more folds: ``python -m solution.train --config C --fold K``.

Plain functions, as in timm's ``train.py``: ``train_one_epoch`` and
``validate``. Each fold writes to ``runs/<name>/fold<k>/``: the resolved
``config.yaml``, ``last.pt`` after every epoch (so a killed run resumes from
the last finished epoch), then ``checkpoint.pt``, the fold's TTA predictions
(``oof.parquet``, ``test.parquet``) and, last, ``metrics.json``, whose presence
marks the fold as done: a done fold is skipped when the command is run again.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from solution.artifacts import Folds, atomic_path, atomic_write_json, read_json
from solution.config import ExperimentConfig, save_config
from solution.data.cache import load_images
from solution.data.layout import Dataset
from solution.data.transforms import train_transform
from solution.distributed import Context, mean_over_ranks, setup, teardown
from solution.errors import ConfigError, KitError
from solution.metrics import macro_f1
from solution.models import build_model
from solution.predict import (
    add_experiment_args,
    check_reusable,
    fold_dir,
    fold_positions,
    load_experiment,
    make_loader,
    predict_fold,
    run_identity,
)
from solution import thresholds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loss_fn(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy, or focal loss (gamma 2) that down-weights easy negatives."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if name == "focal":
        return ((1 - torch.exp(-bce)) ** 2 * bce).mean()
    return bce.mean()


def make_optimizer(cfg: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_one_epoch(cfg: ExperimentConfig, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler, ctx: Context, desc: str) -> float:
    """One pass over this rank's share of the training images; returns the mean loss over all ranks."""
    model.train()
    device = ctx.device
    total, count = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if ctx.is_main else True)
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = loss_fn(cfg.loss, logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(x)
        count += len(x)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return mean_over_ranks(ctx, total, count)


@torch.no_grad()
def validate(cfg: ExperimentConfig, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Validation loss and macro-F1, at 0.5 and at per-class cut-offs fitted on this fold (optimistic)."""
    model.eval()
    probs, targets, total = [], [], 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
        total += loss_fn(cfg.loss, logits, y).item() * len(x)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, t = np.concatenate(probs), np.concatenate(targets).astype(np.uint8)
    return {
        "val_loss": total / len(p),
        "val_macro_f1_at_0.5": macro_f1(t, p > 0.5),
        "val_macro_f1_fitted": thresholds.fitted_macro_f1(p, t),
    }


def _save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path: Path, cfg: ExperimentConfig, folds: Folds, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> tuple[int, list[dict]]:
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


def train_fold(cfg: ExperimentConfig, dataset: Dataset, folds: Folds, fold: int, runs_dir: Path, ctx: Context = Context()) -> dict:
    """Train (or resume) one fold, predict its validation and test images with TTA; returns its metrics.

    Under torchrun each rank trains on its share of every epoch (DistributedSampler)
    and DDP averages the gradients; rank 0 validates, saves and predicts.
    """
    out = fold_dir(runs_dir, cfg, fold)
    if (out / "metrics.json").is_file():
        done = read_json(out / "metrics.json")
        check_reusable(out / "metrics.json", done, cfg, folds)
        log(ctx, f"{cfg.name} fold {fold}: already trained ({out}/metrics.json), skipping")
        return done
    if ctx.is_main:
        save_config(cfg, out / "config.yaml")
        load_images(dataset, "train", dataset.train_ids, cfg.image_size)  # build the cache once, not once per rank
    ctx.barrier()
    seed_everything(cfg.seed + fold)
    train_pos, val_pos = fold_positions(dataset, folds, fold)
    images = load_images(dataset, "train", dataset.train_ids, cfg.image_size)
    train_loader = make_loader(cfg, images, train_pos, dataset.train_labels, train_transform(cfg.augment), shuffle=True, ctx=ctx)
    val_loader = make_loader(cfg, images, val_pos, dataset.train_labels)

    model = build_model(cfg).to(ctx.device)
    optimizer = make_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * len(train_loader), pct_start=0.2)
    start_epoch, history = _resume(out / "last.pt", cfg, folds, model, optimizer, scheduler)
    if start_epoch:
        log(ctx, f"{out}: resuming after epoch {start_epoch}")
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        train_loss = train_one_epoch(cfg, model, train_loader, optimizer, scheduler, ctx, f"{cfg.name} f{fold} e{epoch + 1}/{cfg.epochs}")
        if ctx.is_main:
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, **validate(cfg, _unwrap(model), val_loader, ctx.device), "seconds": time.time() - t0}
            history.append(metrics)
            log(ctx, f"{cfg.name} fold {fold} {_epoch_summary(cfg, metrics)}")
            state = {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            _save_state(out / "last.pt", **state, epoch=epoch + 1, history=history, **run_identity(cfg, folds))
        ctx.barrier()

    final = {}
    if ctx.is_main:
        _save_state(out / "checkpoint.pt", model=_unwrap(model).state_dict(), **run_identity(cfg, folds))
        predict_fold(cfg, _unwrap(model), dataset, folds, fold, out, ctx.device)
        val = {k: v for k, v in history[-1].items() if k.startswith("val_")}
        final = {"fold": fold, **run_identity(cfg, folds), "world_size": ctx.world_size, "steps_per_epoch": len(train_loader), **val, "history": history}
        atomic_write_json(out / "metrics.json", final)
        (out / "last.pt").unlink(missing_ok=True)
    ctx.barrier()
    return final


def _epoch_summary(cfg: ExperimentConfig, m: dict) -> str:
    return (
        f"epoch {m['epoch']}/{cfg.epochs}: train loss {m['train_loss']:.4f}  val loss {m['val_loss']:.4f}  "
        f"val macro-F1 {m['val_macro_f1_at_0.5']:.4f} @0.5, {m['val_macro_f1_fitted']:.4f} fitted  ({m['seconds']:.1f}s)"
    )


def log(ctx: Context, message: str) -> None:
    if ctx.is_main:
        print(message, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train an experiment on one or more folds.")
    add_experiment_args(parser)
    parser.add_argument("--fold", type=int, nargs="*", default=None, help="fold(s) to train (default: all)")
    args = parser.parse_args(argv)
    try:
        cfg, folds, dataset = load_experiment(args)
        ctx = setup(cfg.device)
        try:
            for k in args.fold if args.fold else range(folds.n_folds):
                if not 0 <= k < folds.n_folds:
                    raise ConfigError(f"--fold {k}: the folds in {args.folds_dir}/ are numbered 0..{folds.n_folds - 1}")
                train_fold(cfg, dataset, folds, k, args.runs_dir, ctx)
        finally:
            teardown(ctx)
    except KitError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
