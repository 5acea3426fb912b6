"""The training loaders' worker processes: one thread per library in each, persistent, seeded per epoch."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from solution.data.augment import train_transform
from solution.data.dataset import HpaDataset, augmentation_seed
from solution.data.loader import cpu_share, make_loader

WORKER_THREADS = """
import sys, time
import cv2, numpy as np, threadpoolctl, torch
from solution.data.loader import cpu_share, make_loader


class ThreadCounts:
    # images whose every item reports, as its pixels, the torch, OpenCV and BLAS threads of the process reading it
    def __len__(self):
        return 4

    def __getitem__(self, pos):
        blas = max(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
        return np.broadcast_to(np.array([torch.get_num_threads(), cv2.getNumThreads(), blas, 0], np.uint8), (2, 2, 4))


torch.set_num_threads(2)  # the parent's pools, which a worker would otherwise keep
threadpoolctl.threadpool_limits(2)
cv2.setNumThreads(2)
image = np.zeros((512, 512, 4), np.uint8)
grid = np.mgrid[0:512, 0:512].astype(np.float32)
for _ in range(3):
    cv2.remap(image, grid[1] + 0.5, grid[0], cv2.INTER_LINEAR)  # the parent's OpenCV pool, started
time.sleep(2)  # ... and asleep: a fork's child that sets OpenCV's threads then waits for them forever
seen = [x[0, 0, 0].tolist() for x, _ in make_loader(ThreadCounts(), np.arange(4), 1, 2)]
print(seen, cv2.getNumThreads())
"""


def test_each_loader_worker_runs_one_thread_per_library():
    """Workers forked by a process whose OpenCV pool sleeps start, and each runs one thread per library."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-c", WORKER_THREADS]
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as run:
        try:
            out, err = run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)  # its workers too, hung in their start
            raise
    assert run.returncode == 0, err[-2000:]
    assert out.split("\n")[-2] == f"{[[1, 1, 1, 0]] * 4} 2"  # torch, OpenCV, BLAS; the parent keeps 2


def test_the_epochs_seed_reaches_persistent_workers():
    """Persistent workers keep their copy of the dataset: the epoch's seed reaches them through the items."""
    images = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 4), dtype=np.uint8)
    loader = make_loader(images, np.arange(8), 2, 2, transform=train_transform("light"), persistent=True)

    def one_epoch(seed: int) -> torch.Tensor:
        loader.sampler.start_epoch(0, seed)
        return torch.cat([x for x, _ in loader])

    first = one_epoch(1)
    workers = {w.pid for w in loader._iterator._workers}
    second, again = one_epoch(2), one_epoch(1)
    assert {w.pid for w in loader._iterator._workers} == workers  # the same processes served every epoch
    assert not torch.equal(first, second) and torch.equal(first, again)


def test_each_rank_and_worker_augments_with_its_own_seed():
    assert augmentation_seed(5, 0, None) == 5 and augmentation_seed(5, 0, 1) == 5 * 1009 + 2  # as before ranks
    seeds = {augmentation_seed(2**31 - 2, rank, worker) for rank in range(8) for worker in (None, *range(16))}
    assert len(seeds) == 8 * 17
    image = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 4), dtype=np.uint8)

    def augmented(rank: int) -> torch.Tensor:
        return torch.stack([HpaDataset(image, [0], None, train_transform("strong"), rank)[(0, s)][0] for s in range(8)])

    assert torch.equal(augmented(0), augmented(0)) and not torch.equal(augmented(0), augmented(1))


def test_loader_workers_are_capped_at_the_processes_share_of_the_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    images = np.zeros((4, 2, 2, 4), np.uint8)
    assert make_loader(images, np.arange(4), 2, 12).num_workers == 12
    monkeypatch.setenv("TRAIN_JOBS", "4")  # scripts/train_folds.sh --jobs 4
    assert cpu_share() == 4 and make_loader(images, np.arange(4), 2, 12).num_workers == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # and torchrun's 8 processes per node for each
    assert cpu_share() == 1 and make_loader(images, np.arange(4), 2, 12).num_workers == 1
