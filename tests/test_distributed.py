"""DDP training through torchrun, on CPU with the gloo backend."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from solution import folds
from solution.artifacts.folds import read_folds

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
