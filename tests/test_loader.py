"""The training loaders' worker processes: one thread per library in each."""

import os
import signal
import subprocess
import sys
from pathlib import Path

WORKER_THREADS = """
import sys, time
import cv2, numpy as np, threadpoolctl, torch
from solution.data.loader import make_loader


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
