"""``scripts/train_folds.sh --jobs 2``: folds trained side by side, one process each, on CPU; a signal to the
script ends them, and a rerun trains the rest side by side."""

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ctrl_c_enabled

from solution import folds, train
from solution.core.fileio import exclusive
from solution.core.workspace import CACHE_DIR
from solution.data.cache import LOCK_FILE

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_folds.sh"
CONFIG = "backbone: test_resnet\nimage_size: 32\nbatch_size: 8\nepochs: 1\naugment: flips\ntta: none\nnum_workers: 0\n"


def test_bad_jobs_value_is_refused(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--jobs", "two"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "--jobs must be a positive whole number, got 'two'" in result.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
# python as the script meets it: records each call with the GPU it was given; torch sees two GPUs
echo "${CUDA_VISIBLE_DEVICES-none} $*" >> "$CALLS"
if [[ "$1" == "-c" ]]; then echo 0,1; fi
"""


def test_the_gpus_are_asked_of_torch_once_and_job_j_trains_on_gpu_j(tmp_path):
    """Without CUDA_VISIBLE_DEVICES the script asks torch for the GPUs once, not once per config (each ask is a
    torch import: seconds), and in every config job j trains on GPU j."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text(FAKE_PYTHON)
    (tmp_path / "bin" / "python").chmod(0o755)
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env |= {"PATH": f"{tmp_path / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(tmp_path), "CALLS": str(tmp_path / "calls")}
    cmd = ["bash", str(SCRIPT), "--data", "data", "--jobs", "2", "a.yaml", "b.yaml"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c for c in calls if " -c " in c] == [
        "none -c import torch; print(','.join(map(str, range(torch.cuda.device_count()))))"
    ]
    trainers = sorted(c.split(" --config ")[0] + " " + c.split(" --share ")[1] for c in calls if "solution.train" in c)
    assert trainers == [
        "0 -m solution.train 0/2",
        "0 -m solution.train 0/2",
        "1 -m solution.train 1/2",
        "1 -m solution.train 1/2",
    ]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.is_file() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _lock_holders(script: subprocess.Popen, runs: Path, count: int) -> dict[Path, int]:
    """The fold locks under ``runs`` and the PIDs they hold (a held lock file holds its holder's PID), once
    ``count`` are held while ``script`` runs; at most two minutes."""
    for _ in range(1200):
        assert script.poll() is None, (runs.parents[1] / "stderr.txt").read_text()[-3000:]
        held = {lock: lock.read_text().strip() for lock in runs.glob("fold*/rank0.lock")}
        held = {lock: int(pid) for lock, pid in held.items() if pid}
        if len(held) >= count:
            return held
        time.sleep(0.1)
    raise AssertionError(f"no {count} fold(s) in training under {runs} within two minutes")


@pytest.mark.slow
@pytest.mark.parametrize(
    "jobs, sig, to_group", [(2, signal.SIGTERM, False), (1, signal.SIGTERM, False), (2, signal.SIGINT, True)]
)
def test_a_signal_to_the_script_ends_its_trainers_and_a_rerun_resumes(tiny_dataset, tmp_path, jobs, sig, to_group):
    """TERM to the script, or Ctrl-C (INT to its process group): no trainer is left holding its fold.

    The test holds the pixel cache's build lock: each trainer takes its fold's lock, then waits there for the
    cache, so all of them hold their folds at once, however their starts spread, when the signal comes. The folds
    are made beforehand, in this process: the script's folds stage finds and keeps them."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "long.yaml").write_text(CONFIG)
    folds.main(["--data", str(tiny_dataset), "--out", str(tmp_path / "folds")])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = ["bash", str(SCRIPT), "--data", str(tiny_dataset), "--jobs", str(jobs), "configs/long.yaml"]
    holders: dict[Path, int] = {}
    with exclusive(tmp_path / CACHE_DIR / LOCK_FILE, "the pixel cache, held by the test"):
        with open(tmp_path / "stderr.txt", "w") as stderr:  # a pipe would wait for every process that holds it
            script = subprocess.Popen(
                cmd, cwd=tmp_path, env=env, start_new_session=True, stderr=stderr, preexec_fn=ctrl_c_enabled
            )
        try:
            holders = _lock_holders(script, tmp_path / "runs" / "long", jobs)
            os.killpg(script.pid, sig) if to_group else script.send_signal(sig)
            script.wait(timeout=60)
            left = [pid for pid in holders.values() if _running(pid)]
        finally:
            for pid in [script.pid, *holders.values()]:
                if _running(pid):
                    os.kill(pid, signal.SIGKILL)  # what a failing run would leave behind
    assert not [pid for pid in left if _running(pid)]
    for lock in holders:
        with exclusive(lock, "the fold", wait=False):  # the next run's trainer takes it
            pass
    err = (tmp_path / "stderr.txt").read_text()
    assert script.returncode == 128 + sig and "stopped by SIG" in err, err[-2000:]
    if jobs == 2 and sig == signal.SIGTERM:
        rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        _check_two_jobs_trained_every_fold(tmp_path, rerun.stdout, set(holders.values()))


def _check_two_jobs_trained_every_fold(root: Path, stdout: str, killed: set[int]) -> None:
    """Every fold trained and assembled; the folds the rerun trained, by two processes: job j trains j, j + 2, ...,
    each with its share of the cores."""
    runs = [json.loads((root / "runs" / "long" / f"fold{k}" / "metrics.json").read_text()) for k in range(5)]
    pids: dict[int, set[int]] = {}
    for k, run in enumerate(runs):
        if run["process"]["pid"] not in killed:
            pids.setdefault(k % 2, set()).add(run["process"]["pid"])
    assert len(pids) == 2 and all(len(p) == 1 for p in pids.values()) and pids[0] != pids[1], pids
    assert {r["process"]["threads"] for r in runs} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    assert len(pd.read_parquet(root / "oof" / "long" / "oof.parquet")) == 40
    assert "wrote oof/long/oof.parquet" in stdout  # a stage's own messages, run as python -m


def test_a_share_names_one_of_n_jobs():
    assert train.share("1/2") == (1, 2)
    for bad in ("2/2", "1", "a/b", "-1/3"):
        with pytest.raises(argparse.ArgumentTypeError):
            train.share(bad)
