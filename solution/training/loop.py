"""Training one experiment on one fold: plain functions, as in timm's ``train.py``.

``train_fold`` writes to ``runs/<name>/fold<k>/`` (a ``FoldRun``, ``solution.artifacts.runs``):
``last.pt`` after every epoch (model, optimizer, scheduler, EMA, RNG states and
the history: plain tensors and numbers, loaded with ``weights_only=True``), so a
killed run resumes from its last finished epoch and ends exactly as an
uninterrupted one; ``best.pt`` whenever the epoch is the best so far by the
``select`` key (``solution.training.selection``); ``history.csv`` and
TensorBoard events in ``tb/`` every epoch. At the end the best epoch's weights,
or with ``swa: N`` the average of the last N epochs' (``solution.training.swa``),
become ``checkpoint.pt`` and predict the fold's validation and test images with
TTA; ``metrics.json``, written last, marks the fold as done.

Picking the best epoch on the validation fold makes that fold's score slightly
optimistic; the stack and the thresholds inherit the same small bias for every
experiment alike. ``swa``, or ``ema`` with the last epoch kept, are the unbiased
alternatives.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, WeightedRandomSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from solution.artifacts.folds import Folds, open_extras
from solution.artifacts.runs import FoldRun
from solution.core.errors import ConfigError
from solution.core.fileio import exclusive
from solution.data.augment import train_transform
from solution.data.batch import BatchTransform
from solution.data.cache import load_images, make_plan, open_cache, open_plan
from solution.data.channels import channel_matrix
from solution.data.dataset import StackedImages
from solution.data.layout import Dataset
from solution.data.loader import EpochSampler, cpu_share, make_loader
from solution.data.sampler import oversampling_sampler
from solution.data.stats import StainStats
from solution.data.transforms import AUGMENTATIONS
from solution.scoring import thresholds
from solution.scoring.metrics import macro_f1
from solution.training.config import ExperimentConfig, save_config
from solution.training.distributed import Context, mean_over_ranks
from solution.training.experiment import fold_run, load_checkpoint
from solution.training.inference import predict_fold
from solution.training.losses import LossFn, build_loss
from solution.training.models import build_model
from solution.training.numerics import Numerics, autotune_convolutions, resolve_numerics
from solution.training.optim import make_optimizer
from solution.training.selection import SELECTIONS
from solution.training.swa import averaged_model, averages_epoch, recompute_batchnorm

log = logging.getLogger(__spec__.name)

SHOW_LOSS_EVERY = 50  # steps between the progress bar's readings of the loss (each one a host sync)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch, as plain tensors and numbers (``weights_only`` loads them)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), None))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], int(has_gauss), gauss)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        _set_cuda_rng_states(state["cuda"])


def _set_cuda_rng_states(saved: list[torch.Tensor]) -> None:
    """Restore the saved CUDA generators on the devices that both the saving process and this one see (a run
    saved with 4 GPUs visible resumes with 1, and the other way round); a different count is warned of."""
    visible = torch.cuda.device_count()
    for device, state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(state, device)
    if len(saved) != visible:
        log.warning(
            f"resuming with {visible} GPU(s) visible where the run saved the random states of {len(saved)}: "
            f"restored those of the first {min(visible, len(saved))}; random draws on the others will differ "
            "from an uninterrupted run's"
        )


@dataclass
class Progress:
    """What a fold has done so far; saved in ``last.pt``."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = -math.inf  # the best epoch's score by the ``select`` key (higher is better)
    best_epoch: int = 0

    @property
    def epochs_since_best(self) -> int:
        return self.epoch - self.best_epoch


@dataclass
class Engine:
    """The model and everything that steps it."""

    model: nn.Module  # the plain module (its state is what is saved)
    step_model: nn.Module  # what the forward pass runs: compiled and/or DDP-wrapped ``model``
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    ema: ModelEmaV3 | None
    swa: AveragedModel | None  # the running average of the last epochs' weights (``swa``), on rank 0
    stats: StainStats
    transform: Callable[..., torch.Tensor]  # uint8 stains -> model input (a BatchTransform)
    loss_fn: LossFn
    numerics: Numerics  # the precision and layout on the device
    scaler: torch.amp.GradScaler  # enabled for fp16 only

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved as best and used to predict: the EMA where there is one."""
        return self.ema.module if self.ema is not None else self.model


def train_one_epoch(
    cfg: ExperimentConfig, engine: Engine, loader: DataLoader, ctx: Context, epoch: int, desc: str
) -> float:
    """One pass over this rank's share of the training images; returns the mean loss over all ranks.

    An optimizer step every ``accumulate`` batches and on the epoch's last, each on the mean gradient of its
    batches (a partial accumulation is not dropped: an epoch shorter than ``accumulate`` would never step).
    No host sync per step: the loss is summed on the device and read once, at the end (and by a progress bar
    that is shown, every ``SHOW_LOSS_EVERY`` steps).
    """
    engine.step_model.train()
    device, dihedral = ctx.device, AUGMENTATIONS[cfg.augment].dihedral
    total, count, start = torch.zeros((), dtype=torch.float64, device=device), 0, time.perf_counter()
    batches = len(loader)
    updates = epoch * updates_per_epoch(batches, cfg.accumulate)
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if ctx.is_main else True)
    engine.optimizer.zero_grad(set_to_none=True)
    for i, (stains, y) in enumerate(bar):
        x = engine.transform(stains.to(device, non_blocking=True), dihedral=dihedral, random_crop=True)
        y = y.to(device, non_blocking=True)
        first = i - i % cfg.accumulate  # the first micro-batch of this update
        final = i + 1 == min(first + cfg.accumulate, batches)  # its last: the epoch's last ends a partial one
        with _gradient_sync(engine.step_model, final):
            with engine.numerics.autocast():
                logits = engine.step_model(x)
            loss = engine.loss_fn(logits.float(), y)
            engine.scaler.scale(loss / min(cfg.accumulate, batches - first)).backward()  # the update's mean
        if final:
            updates += 1
            _update(cfg, engine, updates)
        total += loss.detach().double() * len(y)
        count += len(y)
        if not bar.disable and (i + 1) % SHOW_LOSS_EVERY == 0:
            bar.set_postfix(loss=f"{total.item() / count:.4f}", img_s=f"{count / (time.perf_counter() - start):.0f}")
    return mean_over_ranks(ctx, total, count)


def updates_per_epoch(batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of ``batches``: one per ``accumulate`` batches, and one more for a remainder
    (an epoch shorter than ``accumulate`` still steps once), as the schedule and a resumed run count them."""
    return -(-batches // accumulate)


def _gradient_sync(model: nn.Module, final: bool) -> contextlib.AbstractContextManager:
    """Around a micro-batch's forward and backward: DDP's ``no_sync`` where its gradients only accumulate, so
    that the ranks all-reduce them once per update, on its final micro-batch; nothing otherwise."""
    if isinstance(model, DistributedDataParallel) and not final:
        return model.no_sync()
    return contextlib.nullcontext()


def _update(cfg: ExperimentConfig, engine: Engine, updates: int) -> None:
    """One optimizer step on the accumulated gradients (through the scaler: a step it skips, fp16's overflow,
    still counts as an update of the schedule and the EMA)."""
    if cfg.clip_grad:
        engine.scaler.unscale_(engine.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(engine.model.parameters(), cfg.clip_grad)
    engine.scaler.step(engine.optimizer)
    engine.scaler.update()
    engine.optimizer.zero_grad(set_to_none=True)
    engine.scheduler.step_update(updates)
    if engine.ema is not None:
        engine.ema.update(engine.model, step=updates)


@torch.no_grad()
def validate(engine: Engine, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """``model``'s validation loss and macro-F1, at 0.5 and at per-class cut-offs fitted on this fold
    (optimistic)."""
    model.eval()
    probs, targets, total = [], [], 0.0
    for stains, y in loader:
        x, y = engine.transform(stains.to(device)), y.to(device)
        with engine.numerics.autocast():
            logits = model(x).float()
        total += engine.loss_fn(logits, y).item() * len(x)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, t = np.concatenate(probs), np.concatenate(targets).astype(np.uint8)
    if not math.isfinite(total):  # a diverged model: no cut-offs to fit to NaN probabilities (see _check_finite)
        return {"val_loss": total}
    return {
        "val_loss": total / len(p),
        "val_macro_f1_at_0.5": macro_f1(t, p > 0.5),
        "val_macro_f1_fitted": thresholds.fitted_macro_f1(p, t),
    }


def _check_finite(cfg: ExperimentConfig, run: FoldRun, epoch: int, what: str, loss: float, precision: str) -> None:
    """Stop a run whose loss is NaN or infinite, as a config error naming what to lower: it cannot recover, and
    the NaN probabilities would otherwise end it at the cut-off search, as a traceback."""
    if not math.isfinite(loss):
        wider = "" if precision == "fp32" else f", or train in precision fp32 (now {precision})"
        raise ConfigError(
            f"the {what} loss became {loss} at epoch {epoch} of fold {run.fold} of {cfg.name}: training diverged; "
            f"lower lr (now {cfg.lr:g}) or set clip_grad (now {cfg.clip_grad:g}){wider}"
        )


def epoch_summary(cfg: ExperimentConfig, m: dict[str, float]) -> str:
    return (
        f"epoch {m['epoch']}/{cfg.epochs}: train loss {m['train_loss']:.4f}  val loss {m['val_loss']:.4f}  "
        f"val macro-F1 {m['val_macro_f1_at_0.5']:.4f} @0.5, {m['val_macro_f1_fitted']:.4f} fitted  "
        f"({m['seconds']:.1f}s, {m['images_per_s']:.0f} img/s)"
    )


def _loaders(
    cfg: ExperimentConfig,
    dataset: Dataset,
    images: np.ndarray,
    extra_datasets: list[Dataset],
    folds: Folds,
    fold: int,
    ctx: Context,
) -> tuple[DataLoader, DataLoader]:
    """The fold's loaders over ``images`` (the dataset's cached training images) and the extra datasets'."""
    train_pos, val_pos = folds.split(dataset.train_ids, fold)
    if len(train_pos) + sum(len(e.train_ids) for e in extra_datasets) < 2 * ctx.world_size:
        raise ConfigError(f"fold {fold} leaves fewer than 2 training images per process: BatchNorm cannot train")
    if cfg.num_workers > cpu_share():
        log.info(f"num_workers {cfg.num_workers}: {cpu_share()} per loader, this process's share of the CPUs")
    extras = [load_images(e, "train", e.train_ids, cfg.image_size) for e in extra_datasets]
    all_images = StackedImages([images, *extras])  # extra images: training side only, after the competition's
    all_labels = np.concatenate([dataset.train_labels, *(e.train_labels for e in extra_datasets)])
    train_pos = np.concatenate([train_pos, folds.extra_rows(fold, extra_datasets, first=len(images))])
    sampler = None
    if cfg.oversample:  # each rank draws its own share, from its own generator
        draws = len(train_pos) // ctx.world_size
        sampler = oversampling_sampler(all_labels[train_pos], cfg.oversample, cfg.seed + ctx.rank, draws)
    train_loader = make_loader(
        all_images,
        train_pos,
        cfg.batch_size,
        cfg.num_workers,
        labels=all_labels,
        transform=train_transform(cfg.augment),
        shuffle=True,
        sampler=sampler,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        persistent=True,
    )
    val_loader = make_loader(
        images, val_pos, cfg.batch_size, cfg.num_workers, labels=dataset.train_labels, persistent=True
    )
    return train_loader, val_loader


def build_engine(
    cfg: ExperimentConfig, stats: StainStats, updates_per_epoch: int, ctx: Context, weights: bool = True
) -> Engine:
    """The model, its optimizer, schedule, EMA and batch transform, on the context's device; ``weights``:
    the model starts from its pretrained weights (False: a saved state is about to replace them)."""
    cuda = ctx.device.type == "cuda"
    numerics = resolve_numerics(cfg.precision, ctx.device)
    autotune_convolutions(ctx.device)
    model = build_model(cfg, weights).to(ctx.device).to(memory_format=numerics.memory_format)
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.epochs * updates_per_epoch,
        warmup_t=min(cfg.warmup_epochs, cfg.epochs) * updates_per_epoch,
        warmup_lr_init=cfg.lr * 0.01,
        t_in_epochs=False,
    )
    ema = ModelEmaV3(model, decay=cfg.ema) if cfg.ema else None
    swa = averaged_model(model) if cfg.swa and ctx.is_main else None
    step_model = cast(nn.Module, torch.compile(model)) if cfg.compile else model
    if ctx.distributed:
        step_model = DistributedDataParallel(step_model, device_ids=[ctx.device.index] if cuda else None)
    transform = BatchTransform(channel_matrix(cfg.channels), stats, numerics.channels_last, cfg.normalize, cfg.crop)
    loss_fn = build_loss(cfg.loss, cfg.focal_gamma)
    scaler = numerics.scaler()
    return Engine(model, step_model, optimizer, scheduler, ema, swa, stats, transform, loss_fn, numerics, scaler)


def _save_last(run: FoldRun, engine: Engine, progress: Progress) -> None:
    state = {
        "model": engine.model.state_dict(),
        "optimizer": engine.optimizer.state_dict(),
        "scheduler": engine.scheduler.state_dict(),
        "ema": engine.ema.state_dict() if engine.ema is not None else {},
        "swa": engine.swa.state_dict() if engine.swa is not None else {},
        "scaler": engine.scaler.state_dict(),  # empty unless fp16
        "rng": rng_state(),
        "threads": torch.get_num_threads(),
        "precision": engine.numerics.precision,
        "progress": {"epoch": progress.epoch, "best": progress.best, "best_epoch": progress.best_epoch},
        "history": progress.history,
    }
    run.save_state(run.last, **state)


def _resume(run: FoldRun, saved: dict[str, Any] | None, engine: Engine) -> Progress:
    """Restore the last finished epoch from ``saved`` (the fold's ``last.pt``, if any). Every rank loads it."""
    if saved is None:
        return Progress()
    engine.model.load_state_dict(saved["model"])
    engine.optimizer.load_state_dict(saved["optimizer"])
    engine.scheduler.load_state_dict(saved["scheduler"])
    if engine.ema is not None:
        engine.ema.load_state_dict(saved["ema"])
    if engine.swa is not None:
        engine.swa.load_state_dict(saved["swa"])
    if engine.scaler.is_enabled() and saved["scaler"]:
        engine.scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"])
    _warn_of_other_threads(run.last, saved.get("threads"))
    _warn_of_other_precision(run.last, saved["precision"], engine.numerics.precision)
    return Progress(history=saved["history"], **saved["progress"])


def _warn_of_other_threads(path: Path, saved: int | None) -> None:
    """A resumed run matches an uninterrupted one bit for bit only with as many torch threads: floating-point
    sums split across threads differ in their last bits (still a sound run, but not the same numbers)."""
    if saved is not None and saved != torch.get_num_threads():
        log.warning(
            f"{path}: resuming with {torch.get_num_threads()} torch threads where the run had {saved}: its numbers "
            f"will differ in their last bits from an uninterrupted run's (OMP_NUM_THREADS={saved} would match)"
        )


def _warn_of_other_precision(path: Path, saved: str, now: str) -> None:
    """``precision: auto`` resolves per device: a run resumed on another kind of GPU may go on in another one."""
    if saved != now:
        log.warning(f"{path}: resuming in {now} where the run trained in {saved} (precision: auto on another device)")


def _end_of_epoch(
    cfg: ExperimentConfig, run: FoldRun, engine: Engine, progress: Progress, metrics: dict, tb: SummaryWriter
) -> None:
    """Rank 0: record the epoch, keep the best weights, add them to the average, save the state to resume from."""
    progress.epoch = metrics["epoch"]
    progress.history.append(metrics)
    run.write_history(progress.history)
    for key, value in metrics.items():
        if key != "epoch":
            tb.add_scalar(key, value, metrics["epoch"])
    tb.flush()
    score = SELECTIONS[cfg.select].score(metrics)
    if score > progress.best or not progress.best_epoch:
        progress.best, progress.best_epoch = score, metrics["epoch"]
        if engine.swa is None:
            _save_best(run, engine.eval_model, engine.stats, progress.epoch)
    if engine.swa is not None and averages_epoch(progress.epoch, cfg.epochs, cfg.swa):
        engine.swa.update_parameters(engine.eval_model)
    _save_last(run, engine, progress)


def _save_best(run: FoldRun, model: nn.Module, stats: StainStats, epoch: int) -> None:
    run.save_state(run.best, model=model.state_dict(), epoch=epoch, stats=stats.to_dict())


def train_fold(
    cfg: ExperimentConfig, dataset: Dataset, folds: Folds, fold: int, runs_dir: Path, ctx: Context = Context()
) -> dict[str, Any]:
    """Train (or resume) one fold, predict its validation and test images with TTA; returns its metrics.

    Under torchrun each rank trains on its share of every epoch (DistributedSampler)
    and DDP averages the gradients; rank 0 validates, saves and predicts.
    """
    run = fold_run(runs_dir, cfg, folds, fold)
    with exclusive(run.lock(ctx.rank), run.name):
        return _train_fold(cfg, dataset, folds, run, ctx)


def _open_train_cache(cfg: ExperimentConfig, dataset: Dataset, ctx: Context) -> tuple[np.ndarray, StainStats]:
    """The cached training images and their stain stats: rank 0 builds the cache while the other ranks wait."""
    if ctx.is_main:
        opened = open_cache(dataset, "train", dataset.train_ids, cfg.image_size)
    ctx.barrier()
    return opened if ctx.is_main else open_cache(dataset, "train", dataset.train_ids, cfg.image_size)


def _start_epoch(cfg: ExperimentConfig, loader: DataLoader, epoch: int, seed: int, rank: int) -> None:
    """Seed the training loader's draws for ``epoch``: its shuffle from ``seed``, an oversampler's from the
    epoch, so that a resumed run draws what an uninterrupted one did."""
    sampler = cast(EpochSampler, loader.sampler)
    sampler.start_epoch(epoch, seed)
    if isinstance(sampler.base, WeightedRandomSampler):
        sampler.base.generator.manual_seed(cfg.seed * 1000 + rank * 100_000 + epoch)


def _train_fold(cfg: ExperimentConfig, dataset: Dataset, folds: Folds, run: FoldRun, ctx: Context) -> dict:
    done = run.trained_metrics()
    if done is not None:
        log.info(f"{cfg.name} fold {run.fold}: already trained ({run.metrics}), skipping")
        return done
    saved = run.load_state(run.last) if run.last.is_file() else None  # checked before anything is written or built
    if ctx.is_main:
        save_config(cfg, run.config)
    images, stats = _open_train_cache(cfg, dataset, ctx)
    seed_everything((cfg.seed + run.fold) % 2**32)  # numpy's seed lies in [0, 2**32 - 1], as cfg.seed does
    train_loader, val_loader = _loaders(cfg, dataset, images, open_extras(folds), folds, run.fold, ctx)
    engine = build_engine(cfg, stats, updates_per_epoch(len(train_loader), cfg.accumulate), ctx, weights=saved is None)
    progress = _resume(run, saved, engine)
    if progress.epoch:
        log.info(f"{run.dir}: resuming after epoch {progress.epoch}")
    tb = SummaryWriter(str(run.tensorboard), purge_step=progress.epoch + 1) if ctx.is_main else None
    for epoch in range(progress.epoch, cfg.epochs):
        if cfg.patience and ctx.agree(progress.epochs_since_best >= cfg.patience):
            log.info(f"{cfg.name} fold {run.fold}: no better {cfg.select} for {cfg.patience} epochs, stopping")
            break
        t0 = time.time()
        _start_epoch(cfg, train_loader, epoch, int(torch.randint(2**31 - 1, ())), ctx.rank)
        desc = f"{cfg.name} f{run.fold} e{epoch + 1}/{cfg.epochs}"
        train_loss = train_one_epoch(cfg, engine, train_loader, ctx, epoch, desc)
        _check_finite(cfg, run, epoch + 1, "training", train_loss, engine.numerics.precision)  # every rank: all-reduced
        if ctx.is_main:
            seconds = time.time() - t0
            images_per_s = len(train_loader) * cfg.batch_size * ctx.world_size / seconds
            val = validate(engine, engine.eval_model, val_loader, ctx.device)
            _check_finite(cfg, run, epoch + 1, "validation", val["val_loss"], engine.numerics.precision)
            metrics = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                **val,
                "seconds": seconds,
                "images_per_s": images_per_s,
            }
            metrics["lr"] = engine.optimizer.param_groups[0]["lr"]
            log.info(f"{cfg.name} fold {run.fold} {epoch_summary(cfg, metrics)}")
            assert tb is not None  # rank 0 writes TensorBoard events
            _end_of_epoch(cfg, run, engine, progress, metrics, tb)
        else:
            progress.epoch = epoch + 1
        ctx.barrier()
    final = {}
    if ctx.is_main:
        averaged = _average(cfg, run, engine, train_loader, val_loader, ctx) if engine.swa is not None else None
        final = _finish(cfg, dataset, images, folds, run, progress, averaged, ctx, engine.numerics, len(train_loader))
    if tb is not None:
        tb.close()
    ctx.barrier()
    return final


SWA_EPOCH_SEED = 2**31 - 2  # the BatchNorm pass's shuffle: fixed, so a resumed run recomputes the same statistics


def _average(
    cfg: ExperimentConfig, run: FoldRun, engine: Engine, train_loader: DataLoader, val_loader: DataLoader, ctx: Context
) -> dict[str, float]:
    """Rank 0, after the last epoch: the SWA average gets its own BatchNorm statistics (one pass over the
    training images), is validated and saved as the fold's best; returns its validation figures."""
    assert engine.swa is not None
    _start_epoch(cfg, train_loader, cfg.epochs, SWA_EPOCH_SEED, ctx.rank)
    recompute_batchnorm(engine.swa, train_loader, engine.transform, ctx.device)
    val = validate(engine, engine.swa.module, val_loader, ctx.device)
    _check_finite(cfg, run, cfg.epochs, "averaged weights' validation", val["val_loss"], engine.numerics.precision)
    _save_best(run, engine.swa.module, engine.stats, cfg.epochs)
    log.info(
        f"{cfg.name} fold {run.fold} average of the last {cfg.swa} epochs: val loss {val['val_loss']:.4f}  "
        f"val macro-F1 {val['val_macro_f1_at_0.5']:.4f} @0.5, {val['val_macro_f1_fitted']:.4f} fitted"
    )
    return val


def _process(device: torch.device) -> dict[str, Any]:
    """What ran the fold: pid, torch threads, device and, on a GPU, the process's peak GPU memory so far (GiB)."""
    process: dict[str, Any] = {"pid": os.getpid(), "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        process["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return process


def _finish(
    cfg: ExperimentConfig,
    dataset: Dataset,
    images: np.ndarray,
    folds: Folds,
    run: FoldRun,
    progress: Progress,
    averaged: dict[str, float] | None,
    ctx: Context,
    numerics: Numerics,
    steps: int,
) -> dict[str, Any]:
    """Rank 0: the kept weights (the best epoch's, or the average's with its validation figures ``averaged``)
    become ``checkpoint.pt`` and predict (in the precision trained with); then ``metrics.json``."""
    if run.best.is_file():
        os.replace(run.best, run.checkpoint)
    model, stats = load_checkpoint(cfg, run, ctx.device)
    test = make_plan(dataset, "test", dataset.test_ids, cfg.image_size)
    predict_fold(cfg, model, stats, dataset, images, open_plan(test), test.files_key, folds, run, numerics)
    best_row = next(h for h in progress.history if h["epoch"] == progress.best_epoch)
    if averaged is not None:
        kept, figures = f"average of epochs {cfg.epochs - cfg.swa + 1}-{cfg.epochs}", averaged
    else:
        kept, figures = f"epoch {progress.best_epoch}", {k: v for k, v in best_row.items() if k.startswith("val_")}
    final = {
        "fold": run.fold,
        "world_size": ctx.world_size,
        "process": _process(ctx.device),
        "precision": numerics.precision,
        "steps_per_epoch": steps,
        "best_epoch": progress.best_epoch,
        "kept": kept,  # the weights that predict
        "epochs_run": len(progress.history),
        **figures,
        "stain_stats": stats.to_dict(),
        "history": progress.history,
    }
    run.write_metrics(final)
    return {**final, **run.identity}
