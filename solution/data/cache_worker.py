"""What the pixel cache's worker processes run: decode a part of a split into the partial file.

A module of its own: a worker imports only what it runs (decoding and pixel sums), not the
build's pool, lock and progress machinery in ``solution.data.cache``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from solution.data.images import read_image
from solution.data.layout import STAINS

# Per part (and, summed, per chunk): per stain the sum of pixel values and of their squares (exact
# integers), and, over every 4th row and column, the pixel count, sums and sums of products of two
# stains (for the stains' correlations).
Sums = dict[str, list]
SAMPLE_STRIDE = 4


def init(build: int) -> None:
    """Set up a worker process of the build process ``build``. A Ctrl-C reaches every process of the terminal's
    group, where a ``KeyboardInterrupt`` would print a traceback per worker: the worker ignores it, and the
    build, interrupted, ends its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would oversubscribe
    threading.Thread(target=_exit_after, args=(build, os.getppid()), daemon=True).start()


def _exit_after(build: int, parent: int) -> None:
    """End this worker once the build process is gone (killed, say): an idle worker would wait on the
    task queue forever. The worker's parent is the build (fork, spawn: the worker is reparented when
    it dies) or a forkserver, which outlives it."""
    while os.getppid() == parent and _exists(build):
        time.sleep(0.2)
    os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def decode_part(partial: Path, offset: int, paths: list[tuple[Path, ...]], size: int) -> Sums:
    """Decode ``paths``, write them as one block at ``offset`` of the partial file, return their pixel sums.

    No fsync: once the write returns the rows are in the file (in the page cache), whatever then happens
    to this process or the build, which is what resuming a killed build needs (as for every file the kit
    writes, a crash of the machine itself is not covered).
    """
    rows = np.empty((len(paths), size, size, len(STAINS)), np.uint8)
    sums, squares = np.zeros(len(STAINS), np.int64), np.zeros(len(STAINS), np.int64)
    for i, image_paths in enumerate(paths):
        rows[i] = read_image(image_paths, size)
        s, q = _pixel_sums(rows[i])
        sums += s
        squares += q
    sample = rows[:, ::SAMPLE_STRIDE, ::SAMPLE_STRIDE].reshape(-1, len(STAINS)).astype(np.int64)
    _write_at(partial, rows, offset)
    return {
        "sum": sums.tolist(),
        "sumsq": squares.tolist(),
        "sample": len(sample),
        "sample_sum": sample.sum(0).tolist(),
        "cross": (sample.T @ sample).tolist(),  # integer matmul: numpy's own loop, exact, no BLAS
    }


def _write_at(path: Path, array: np.ndarray, offset: int) -> None:
    data = memoryview(array.data).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:  # a write may take fewer bytes than it is given
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


def _pixel_sums(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum and sum of squares of a uint8 image, exactly.

    cv2.meanStdDev is some 20x faster than numpy here; its doubles are within
    1e-5 of the integer sums even for 2048 px images, so rounding recovers them.
    """
    n = image.shape[0] * image.shape[1]
    mean, std = (v.ravel() for v in cv2.meanStdDev(image))
    return np.rint(mean * n).astype(np.int64), np.rint((std * std + mean * mean) * n).astype(np.int64)
