"""How much the data path costs training, and the GPU's rates: ``python -m solution.bench train [--quick]``.

- ``train_loop_ratio``: for each demo config, the full training loop (cached
  images -> workers -> device transforms -> step) against the same model
  stepping on batches already in memory as model input; the ratio of their
  speeds (1.0: the data path is free). The figure printed is the lowest.
- ``loader_<preset>_img_s_per_worker``: a real training loader's images/s per
  worker, 2 persistent workers over a 512 px cache of 4 stains, for each
  augmentation preset (augmentation, collation, shared memory and the transfer
  to the main process included): a GPU that trains at R images/s needs about
  R / this many workers.
- On a machine with a GPU (detected), for ResNet34 and DenseNet121 at 512 px,
  ``gpu_<model>_<mode>_<figure>``: ``train_img_s`` (train steps), ``tta_img_s``
  (images predicted with d4 TTA, each in 8 views, through the kit's batch
  transform and layout), ``peak_gib`` (peak GPU memory) and
  ``workers_<preset>`` (loader workers to feed ``train_img_s``), in the kit's
  choice for the GPU (``precision: auto``: ``bf16_cl``, bf16 autocast and
  channels-last, or ``fp16_cl`` below compute capability 8.0) and in ``fp32``
  (contiguous layout, TF32 off); and ``gpu_syncs_per_step``, the host syncs per
  step of the kit's own training loop, counted by CUDA's sync debug mode.

``--quick`` runs every row at a CPU size (a few images, 64 px): ``scripts/gpu_check.sh --dry-run``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from solution.benchmarks import best_seconds
from solution.core.workspace import DEMO_CONFIGS
from solution.data.augment import train_transform
from solution.data.batch import BatchTransform
from solution.data.cache import open_cache
from solution.data.channels import channel_matrix
from solution.data.layout import open_dataset
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.data.synthetic import generate
from solution.data.transforms import AUGMENTATIONS
from solution.training import loop
from solution.training.config import ExperimentConfig, build_config, load_config
from solution.training.distributed import Context, resolve_device
from solution.training.inference import predict_probs
from solution.training.numerics import Numerics, resolve_numerics

LOADER_WORKERS = 2
FED_PRESETS = ("light", "strong")  # the presets of configs/hpa: how many workers each GPU row needs with them


@dataclass(frozen=True)
class Size:
    """How much each row measures."""

    demo_images: int  # training images of the demo configs' loop ratio (64 px)
    loader_images: int  # cached images the loaders read
    pixels: int  # the loaders' and the GPU rows' image size
    gpu_batch: int  # train batch of the GPU rows; their d4 TTA predicts half as many images per batch
    gpu_steps: int  # train steps, and TTA batches, per timing of a GPU row


FULL = Size(demo_images=640, loader_images=128, pixels=512, gpu_batch=32, gpu_steps=5)
QUICK = Size(demo_images=64, loader_images=16, pixels=64, gpu_batch=8, gpu_steps=2)


def _identity(x: torch.Tensor, dihedral: bool = False, random_crop: bool = False) -> torch.Tensor:
    return x


def loop_ratio(cfg: ExperimentConfig, images: np.ndarray, stats: StainStats, labels: np.ndarray) -> tuple[float, float]:
    """(full loop images/s, in-memory images/s) for one config, one epoch each, same model and optimizer."""
    device = resolve_device(cfg.device)
    ctx = Context(device=device)
    loader = make_loader(
        images,
        np.arange(len(images)),
        cfg.batch_size,
        cfg.num_workers,
        labels=labels,
        transform=train_transform(cfg.augment),
        shuffle=True,
    )
    engine = loop.build_engine(cfg, stats, len(loader), ctx)
    transform = BatchTransform(channel_matrix(cfg.channels), stats)
    in_memory = [(transform(x, dihedral=True).to(device), y.to(device)) for x, y in loader]
    full = best_seconds(lambda: loop.train_one_epoch(cfg, engine, loader, ctx, 0, "full"), 2, warm_up=True)
    engine.transform = _identity
    memory = best_seconds(
        lambda: loop.train_one_epoch(cfg, engine, in_memory, ctx, 0, "memory"),  # type: ignore[arg-type]
        2,
        warm_up=True,
    )
    n = len(loader) * cfg.batch_size
    return n / full, n / memory


def loader_rate(images: np.ndarray, labels: np.ndarray, preset: str, batch: int = 16) -> float:
    """Images/s per worker of a real training loader of ``preset`` over the cached ``images``:
    ``LOADER_WORKERS`` persistent workers, best of 3 epochs after one that starts them."""
    loader = make_loader(
        images,
        np.arange(len(images)),
        batch,
        LOADER_WORKERS,
        labels=labels,
        transform=train_transform(preset),
        shuffle=True,
        persistent=True,
    )
    seconds = best_seconds(lambda: sum(len(y) for _, y in loader), 3, warm_up=True)
    return len(loader) * batch / seconds / LOADER_WORKERS


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Neither matmuls nor cuDNN convolutions in TF32 inside (true fp32), torch's settings as before after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def gpu_rates(name: str, numerics: Numerics, stats: StainStats, size: Size) -> dict[str, float]:
    """Train images/s, d4-TTA images/s (images, each in 8 views) and peak GiB of a model on the GPU.

    Training: ``size.gpu_steps`` steps of AdamW (through the gradient scaler for fp16) on one batch of input in
    ``numerics``' precision and layout. TTA: the
    kit's ``predict_probs`` on uint8 stains already on the GPU, through its batch transform, in that layout.
    """
    cfg = build_config({"name": "bench", "backbone": name, "image_size": size.pixels}, "bench")
    device = numerics.device
    torch.cuda.reset_peak_memory_stats(device)
    model = loop.build_model(cfg).to(device).to(memory_format=numerics.memory_format)
    opt, scaler = torch.optim.AdamW(model.parameters(), lr=1e-4), numerics.scaler()
    shape = (size.gpu_batch, 4, size.pixels, size.pixels)
    x = torch.randn(shape, device=device).contiguous(memory_format=numerics.memory_format)
    y = torch.zeros(size.gpu_batch, 28, device=device)

    def step() -> None:
        for _ in range(size.gpu_steps):
            with numerics.autocast():
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        torch.cuda.synchronize(device)

    tta_batch = size.gpu_batch // 2
    stains = torch.randint(0, 256, (tta_batch, size.pixels, size.pixels, 4), dtype=torch.uint8, device=device)
    transform = BatchTransform(channel_matrix(cfg.channels), stats, channels_last=numerics.channels_last)
    batches = [(stains, y[:tta_batch])] * size.gpu_steps

    def predict() -> None:
        predict_probs(model, batches, "d4", numerics, transform)  # type: ignore[arg-type]
        torch.cuda.synchronize(device)

    train_img_s = size.gpu_steps * size.gpu_batch / best_seconds(step, 2, warm_up=True)
    tta_img_s = len(batches) * tta_batch / best_seconds(predict, 2, warm_up=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    return {"train_img_s": train_img_s, "tta_img_s": tta_img_s, "peak_gib": peak}


def syncs_per_step(
    images: np.ndarray, labels: np.ndarray, stats: StainStats, device: torch.device, backbone: str = "resnet34"
) -> float:
    """Host syncs per step of the kit's training loop (``light``, its real loader), counted by CUDA's sync debug
    mode over one epoch after a warm-up epoch (which moves the batch transform's constants)."""
    values = {"name": "bench", "backbone": backbone, "image_size": images.shape[1], "batch_size": 8}
    cfg = build_config({**values, "num_workers": LOADER_WORKERS, "augment": "light"}, "bench")
    ctx = Context(device=device)
    positions = np.arange(len(images))
    transform = train_transform(cfg.augment)
    loader = make_loader(images, positions, 8, cfg.num_workers, labels=labels, transform=transform, shuffle=True)
    engine = loop.build_engine(cfg, stats, len(loader), ctx)
    loop.train_one_epoch(cfg, engine, loader, ctx, 0, "warm-up")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop.train_one_epoch(cfg, engine, loader, ctx, 1, "syncs")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught) / len(loader)


def loop_figures(tmp: Path, size: Size) -> dict[str, float]:
    """``train_loop_ratio`` over the demo configs, on a 64 px synthetic cache; prints its table."""
    data = generate(tmp / "demo", n_train=size.demo_images, n_test=8, size=64, seed=0)
    dataset = open_dataset(data)
    cached, stats = open_cache(dataset, "train", dataset.train_ids, 64, cache_dir=tmp / "cache")
    images = np.asarray(cached)
    print(f"{'demo config':<28}{'full loop img/s':>18}{'in memory img/s':>18}{'ratio':>8}")
    ratios = []
    for path in sorted(DEMO_CONFIGS.glob("*.yaml")):
        full, memory = loop_ratio(load_config(path), images, stats, dataset.train_labels)
        ratios.append(full / memory)
        print(f"{path.stem:<28}{full:>18.0f}{memory:>18.0f}{full / memory:>8.2f}")
    return {"train_loop_ratio": min(ratios)}


GPU_MODELS = ("resnet34", "densenet121")


def gpu_figures(
    loader_rates: dict[str, float], stats: StainStats, size: Size, device: torch.device, models: tuple[str, ...]
) -> dict[str, float]:
    """The GPU rows of ``models`` on ``device``, in the kit's precision there and in fp32, each with the loader
    workers it needs; prints their table."""
    kit = resolve_numerics("auto", device)
    figures: dict[str, float] = {}
    workers = "".join(f"{'workers ' + p:>16}" for p in FED_PRESETS)
    print(f"\n{f'GPU, {size.pixels} px':<26}{'train img/s':>13}{'d4-TTA img/s':>14}{'peak GiB':>10}{workers}")
    for model in models:
        for mode, numerics in (
            (f"{kit.precision}_cl", replace(kit, channels_last=True)),
            ("fp32", Numerics("fp32", device, channels_last=False)),
        ):
            with no_tf32() if mode == "fp32" else contextlib.nullcontext():
                row = gpu_rates(model, numerics, stats, size)
            for preset in FED_PRESETS:
                row[f"workers_{preset}"] = math.ceil(row["train_img_s"] / loader_rates[preset])
            figures.update({f"gpu_{model}_{mode}_{key}": value for key, value in row.items()})
            needs = "".join(f"{row[f'workers_{p}']:>16.0f}" for p in FED_PRESETS)
            print(
                f"{model + ' ' + mode:<26}{row['train_img_s']:>13.0f}{row['tta_img_s']:>14.0f}"
                f"{row['peak_gib']:>10.1f}{needs}"
            )
    return figures


def run(quick: bool = False) -> dict[str, float]:
    size = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        figures = loop_figures(Path(tmp), size)
        data = generate(Path(tmp) / "cells", n_train=size.loader_images, n_test=8, size=128, seed=1)
        dataset = open_dataset(data)
        images, stats = open_cache(dataset, "train", dataset.train_ids, size.pixels, cache_dir=Path(tmp) / "cache")
        rates = {name: loader_rate(images, dataset.train_labels, name) for name in AUGMENTATIONS}
        print(f"\n{f'preset ({size.pixels} px, 4 stains)':<28}{'img/s per worker':>18}   ({LOADER_WORKERS} workers)")
        for name, rate in rates.items():
            figures[f"loader_{name}_img_s_per_worker"] = rate
            print(f"{name:<28}{rate:>18.0f}")
        if not torch.cuda.is_available():
            print("\nno GPU: the GPU rows are measured where torch sees one (same command)")
            return figures
        device = torch.device("cuda", torch.cuda.current_device())
        figures.update(gpu_figures(rates, stats, size, device, GPU_MODELS))
        figures["gpu_syncs_per_step"] = syncs_per_step(images, dataset.train_labels, stats, device)
        print(f"\nhost syncs per training step (the kit's loop): {figures['gpu_syncs_per_step']:.2f}")
    return figures
