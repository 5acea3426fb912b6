"""``python -m solution.bench train``: its GPU rows, run on the CPU with the CUDA calls they make simulated."""

import sys
import warnings

import numpy as np
import pytest
import torch

from solution.benchmarks import train as bench
from solution.data.stats import StainStats
from solution.training.numerics import Numerics

TINY = bench.Size(demo_images=8, loader_images=8, pixels=16, gpu_batch=2, gpu_steps=1)


@pytest.fixture
def simulated_cuda(monkeypatch):
    """torch.cuda's timing, memory and sync-debug calls as a GPU would answer them; the sync debug mode set is
    recorded, and while it is "warn", each .item() warns as CUDA's would."""
    modes = []
    real_item = torch.Tensor.item

    def item(self):  # on a GPU, the kit's own .item() calls wait for the device (torch's on CPU tensors do not)
        if modes and modes[-1] == "warn" and sys._getframe(1).f_globals.get("__name__", "").startswith("solution."):
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=2)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    return modes


@pytest.mark.parametrize("kit_precision", ["bf16", "fp16"])  # precision: auto on an A100 / on a T4
def test_gpu_rows_give_every_figure_and_the_workers_to_feed_them(simulated_cuda, capsys, monkeypatch, kit_precision):
    monkeypatch.setattr(bench, "resolve_numerics", lambda name, device: Numerics(kit_precision, device, False))
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900)
    with torch.backends.cudnn.flags(allow_tf32=True):
        rates = {"light": 100.0, "strong": 10.0}
        figures = bench.gpu_figures(rates, stats, TINY, torch.device("cpu"), ("test_resnet",))
        assert torch.backends.cudnn.allow_tf32  # the fp32 rows turned TF32 off, and back on after
    for model in ("test_resnet",):
        for mode in (f"{kit_precision}_cl", "fp32"):
            row = {k.removeprefix(f"gpu_{model}_{mode}_"): v for k, v in figures.items() if f"_{model}_{mode}_" in k}
            assert set(row) == {"train_img_s", "tta_img_s", "peak_gib", "workers_light", "workers_strong"}
            assert row["train_img_s"] > 0 and row["tta_img_s"] > 0 and row["peak_gib"] == 3
            assert row["workers_light"] == np.ceil(row["train_img_s"] / 100) and row["workers_strong"] >= 1
    assert "test_resnet fp32" in capsys.readouterr().out


def test_syncs_are_counted_over_an_epoch_of_the_kits_loop(simulated_cuda):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 32, 32, 4), dtype=np.uint8)
    labels = (rng.random((16, 28)) < 0.3).astype(np.uint8)
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900)
    syncs = bench.syncs_per_step(images, labels, stats, torch.device("cpu"), "test_resnet")
    assert simulated_cuda == ["warn", 0] and syncs == 1 / 2  # 2 steps, one reading of the epoch's loss
