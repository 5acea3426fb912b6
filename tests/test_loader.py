"""The training loaders' worker processes: one thread per library in each."""

import cv2
import numpy as np
import threadpoolctl
import torch

from solution.data.loader import make_loader


class ThreadCounts:
    """Images whose every item reports, as its pixels, the torch, OpenCV and BLAS threads of the process reading it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, pos: int) -> np.ndarray:
        blas = max(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
        counts = np.array([torch.get_num_threads(), cv2.getNumThreads(), blas, 0], np.uint8)
        return np.broadcast_to(counts, (2, 2, 4))


def test_each_loader_worker_runs_one_thread_per_library():
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)  # the parent's pools, which a worker would otherwise keep
    cv2.setNumThreads(2)
    try:
        with threadpoolctl.threadpool_limits(2):
            seen = [x[0, 0, 0].tolist() for x, _ in make_loader(ThreadCounts(), np.arange(4), 1, 2)]
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
    assert seen == [[1, 1, 1, 0]] * 4  # torch, OpenCV, BLAS
