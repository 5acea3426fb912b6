"""The ``precision`` key: what ``auto`` and each explicit value become on each kind of device."""

import logging

import numpy as np
import pytest
import torch

from solution.artifacts.runs import FoldRun
from solution.core.errors import ConfigError
from solution.data.stats import StainStats
from solution.training import loop
from solution.training.config import build_config
from solution.training.distributed import Context
from solution.training.numerics import autotune_convolutions, resolve_numerics

GPU = torch.device("cuda", 0)


@pytest.mark.parametrize(
    "name, device, capability, expected",
    [
        ("auto", torch.device("cpu"), None, "fp32"),
        ("auto", GPU, (9, 0), "bf16"),  # H100
        ("auto", GPU, (8, 0), "bf16"),  # A100
        ("auto", GPU, (7, 5), "fp16"),  # T4
        ("auto", GPU, (7, 0), "fp16"),  # V100
        ("auto", GPU, (6, 0), "fp16"),  # P100
        ("fp16", torch.device("cpu"), None, "fp16"),
        ("bf16", torch.device("cpu"), None, "bf16"),
        ("fp32", GPU, (9, 0), "fp32"),
        ("fp16", GPU, (9, 0), "fp16"),
        ("bf16", GPU, (8, 6), "bf16"),
    ],
)
def test_precision_by_device_and_compute_capability(name, device, capability, expected, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    caplog.set_level(logging.INFO, logger="solution")
    numerics = resolve_numerics(name, device)
    assert numerics.precision == expected and numerics.channels_last  # CUDA and the CPU convolve faster so
    assert f"precision {name}: {expected} on {device}" in caplog.text


def test_explicit_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.raises(ConfigError, match=r"precision: bf16 needs a GPU of compute capability 8.0 .* \(7, 5\)"):
        resolve_numerics("bf16", GPU)


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", None)])
def test_the_forward_runs_in_the_precision_and_only_fp16_scales(precision, dtype):
    numerics = resolve_numerics(precision, torch.device("cpu"))
    with numerics.autocast():
        out = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == (dtype or torch.float32) and numerics.scaler().is_enabled() == (precision == "fp16")


def test_the_fp16_scaler_state_is_saved_and_restored_on_resume(tmp_path):
    cfg = build_config({"name": "s", "backbone": "test_resnet", "image_size": 16, "precision": "fp16"}, "test")
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900)
    run = FoldRun(tmp_path, "s", 0, {"config": cfg.to_dict()}, "none")
    run.dir.mkdir(parents=True)
    engine = loop.build_engine(cfg, stats, 1, Context())
    engine.scaler.scale(torch.ones(()))
    engine.scaler.update(1024.0)  # a scale fp16's overflows had backed off to, say
    loop._save_last(run, engine, loop.Progress(epoch=1, history=[{"epoch": 1}]))
    resumed = loop.build_engine(cfg, stats, 1, Context(), weights=False)
    assert resumed.scaler.get_scale() != 1024.0
    loop._resume(run, run.load_state(run.last), resumed)
    assert resumed.scaler.state_dict() == engine.scaler.state_dict() and resumed.scaler.get_scale() == 1024.0


def test_cudnn_times_its_kernels_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # and back after the test
    autotune_convolutions(torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark
    autotune_convolutions(GPU)
    assert torch.backends.cudnn.benchmark
