"""DDP training through torchrun, on CPU with the gloo backend; gradient accumulation under DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from solution import folds
from solution.artifacts.folds import read_folds
from solution.core.errors import ConfigError
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.training import loop
from solution.training.config import build_config
from solution.training.distributed import Context, resolve_device

CONFIG = (
    "backbone: test_efficientnet\nchannels: rgby\nimage_size: 32\nbatch_size: 4\nepochs: 2\nlr: 0.003\n"
    "augment: flips\ntta: flip\nnum_workers: 0\ndevice: cpu\n"
)


@pytest.mark.slow
def test_torchrun_two_processes_train_one_fold(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ddp.yaml").write_text(CONFIG)
    folds.main(["--data", str(tiny_dataset)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "solution.train",
        "--config",
        "ddp.yaml",
        "--fold",
        "0",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    run = tmp_path / "runs" / "ddp" / "fold0"
    metrics = json.loads((run / "metrics.json").read_text())
    n_train = int((read_folds("folds").fold != 0).sum())
    # each of the 2 ranks sees half of the training images per epoch, in batches of 4
    assert metrics["world_size"] == 2
    assert metrics["steps_per_epoch"] == (n_train // 2) // 4
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert len(pd.read_parquet(run / "oof.parquet")) == 40 - n_train
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 logs


def test_accumulating_micro_batches_skip_the_all_reduce(tmp_path, monkeypatch):
    """Under DDP with ``accumulate: 2``, the first micro-batch of each update runs in ``no_sync``: one
    all-reduce per update (a one-process gloo group here)."""
    cfg = build_config(
        {"name": "d", "backbone": "test_resnet", "image_size": 16, "batch_size": 4, "accumulate": 2}
        | {"augment": "flips", "num_workers": 0},
        "test",
    )
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (16, 16, 16, 4), dtype=np.uint8), (rng.random((16, 28)) < 0.3)
    loader = make_loader(images, np.arange(16), 4, 0, labels=labels.astype(np.uint8), shuffle=True)
    engine = loop.build_engine(cfg, StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900), len(loader), Context())
    skipped, real = [], DistributedDataParallel.no_sync
    monkeypatch.setattr(DistributedDataParallel, "no_sync", lambda self: skipped.append(1) or real(self))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        engine.step_model = DistributedDataParallel(engine.model)
        assert np.isfinite(loop.train_one_epoch(cfg, engine, loader, Context(), 0, "ddp"))
    finally:
        dist.destroy_process_group()
    assert len(skipped) == 2  # micro-batches 1 and 3 of 4; 2 and 4 all-reduce and step


def test_more_processes_than_gpus_is_a_clean_error(monkeypatch):
    """NPROC_PER_NODE=2 on one GPU: the second process is refused by name, not by torch's invalid device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="process 1 of this node takes GPU 1, but torch sees 1"):
        resolve_device("auto", local_rank=1)
