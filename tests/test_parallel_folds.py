"""``scripts/train_folds.sh --jobs 2``: folds trained side by side, one process each, on CPU."""

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_folds.sh"
CONFIG = "backbone: test_resnet\nimage_size: 32\nbatch_size: 8\nepochs: 1\naugment: flips\ntta: none\nnum_workers: 0\n"


@pytest.mark.slow
def test_two_jobs_train_every_fold_in_two_processes(tiny_dataset, tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "par.yaml").write_text(CONFIG)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = ["bash", str(SCRIPT), "--data", str(tiny_dataset), "--jobs", "2", "configs/par.yaml"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads((tmp_path / "runs" / "par" / f"fold{k}" / "metrics.json").read_text()) for k in range(5)]
    pids = [r["process"]["pid"] for r in runs]
    assert pids[0] == pids[2] == pids[4] and pids[1] == pids[3] and pids[0] != pids[1]  # job j trains j, j + 2, ...
    assert {r["process"]["threads"] for r in runs} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    assert len(pd.read_parquet(tmp_path / "oof" / "par" / "oof.parquet")) == 40
    assert "wrote oof/par/oof.parquet" in result.stdout  # a stage's own messages, run as python -m


def test_bad_jobs_value_is_refused(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--jobs", "two"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "--jobs must be a positive whole number, got 'two'" in result.stderr
