"""How much the data path costs training: ``python -m solution.bench train``.

- ``train_loop_ratio``: for each demo config, the full training loop (cached
  images -> workers -> device transforms -> step) against the same model
  stepping on batches already in memory as model input; the ratio of their
  speeds (1.0: the data path is free). The figure printed is the lowest.
- ``loader_<preset>_img_s_per_worker``: one worker's images/s through the
  dataset at 512 px, 4 stains, for each augmentation preset: a GPU that trains
  at R images/s needs about R / this many workers.
- On a machine with a GPU (detected), ``gpu_<model>_<mode>_<train|tta>_img_s``:
  train steps and d4-TTA predictions per second for ResNet34 and DenseNet121 at
  512 px, bf16 autocast + channels-last against fp32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from solution.benchmarks import best_seconds
from solution.data.batch import BatchTransform
from solution.data.cache import open_cache
from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.layout import open_dataset
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.data.synthetic import generate
from solution.data.transforms import AUGMENTATIONS, train_transform
from solution.training import loop
from solution.training.config import ExperimentConfig, build_config, load_config
from solution.training.distributed import Context, resolve_device
from solution.training.inference import predict_probs
from solution.training.numerics import Numerics

DEMO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"
N_TRAIN = 640


def _identity(x: torch.Tensor, dihedral: bool = False) -> torch.Tensor:
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


def loader_rate(preset_name: str, size: int = 512, n: int = 48) -> float:
    """Images/s of one worker: dataset items (augmentation included) from in-memory 512 px stains."""
    images = np.random.default_rng(0).integers(0, 255, (8, size, size, 4), dtype=np.uint8)
    dataset = HpaDataset(images, np.arange(n) % len(images), None, train_transform(preset_name))
    seconds = best_seconds(lambda: [dataset[(i, 0)] for i in range(n)], repeats=1, warm_up=True)
    return n / seconds


def gpu_rates(name: str, bf16: bool, batch: int = 32, size: int = 512) -> tuple[float, float]:
    """(train img/s, d4-TTA predict img/s) of a model on the GPU."""
    cfg = build_config({"name": "bench", "backbone": name, "image_size": size, "batch_size": batch}, "bench")
    device = torch.device("cuda")
    numerics = Numerics("bf16", device, channels_last=True) if bf16 else Numerics("fp32", device, channels_last=False)
    model = loop.build_model(cfg).to(device).to(memory_format=numerics.memory_format)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 4, size, size, device=device).contiguous(memory_format=numerics.memory_format)
    y = torch.zeros(batch, 28, device=device)

    def step() -> None:
        for _ in range(5):
            with numerics.autocast():
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.cuda.synchronize()

    loader = [(x[:8], y[:8])] * 4

    def predict() -> None:
        predict_probs(model, loader, "d4", numerics)  # type: ignore[arg-type]
        torch.cuda.synchronize()

    return 5 * batch / best_seconds(step, 2, warm_up=True), 4 * 8 / best_seconds(predict, 2, warm_up=True)


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp) / "data", n_train=N_TRAIN, n_test=8, size=64, seed=0)
        dataset = open_dataset(data)
        cached, stats = open_cache(dataset, "train", dataset.train_ids, 64, cache_dir=Path(tmp) / "cache")
        images = np.asarray(cached)
        print(f"{'demo config':<28}{'full loop img/s':>18}{'in memory img/s':>18}{'ratio':>8}")
        ratios = []
        for path in sorted(DEMO_CONFIGS.glob("*.yaml")):
            full, memory = loop_ratio(load_config(path), images, stats, dataset.train_labels)
            ratios.append(full / memory)
            print(f"{path.stem:<28}{full:>18.0f}{memory:>18.0f}{full / memory:>8.2f}")
        figures["train_loop_ratio"] = min(ratios)
    print(f"\n{'preset (512 px, 4 stains)':<28}{'img/s per worker':>18}")
    for name in AUGMENTATIONS:
        figures[f"loader_{name}_img_s_per_worker"] = rate = loader_rate(name)
        print(f"{name:<28}{rate:>18.0f}")
    if torch.cuda.is_available():
        for model in ("resnet34", "densenet121"):
            for mode, bf16 in (("bf16_cl", True), ("fp32", False)):
                train_rate, tta_rate = gpu_rates(model, bf16)
                figures[f"gpu_{model}_{mode}_train_img_s"] = train_rate
                figures[f"gpu_{model}_{mode}_tta_img_s"] = tta_rate
    else:
        print("\nno GPU: the GPU rows are measured where torch sees one (same command)")
    return figures
