"""A resized uint8 copy of every image of a split, stored once as a memory-mapped .npy.

Decoding four PNGs per image per epoch dominates training time on small
models; the cache decodes each image once (in threads: OpenCV releases the
GIL) and every fold and experiment at that size reuses it. Its file name
carries a hash of the dataset path, split, size and Ids, so a changed dataset
never reads a stale cache. It is built under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from solution.data.layout import STAINS, Dataset, read_image
from solution.fileio import atomic_path


def cache_file(dataset: Dataset, split: str, ids: list[str], size: int, cache_dir: Path) -> Path:
    key = hashlib.sha256("\n".join([str(dataset.root.resolve()), split, str(size), *ids]).encode()).hexdigest()[:16]
    return cache_dir / f"{split}-{size}px-{key}.npy"


def load_images(dataset: Dataset, split: str, ids: list[str], size: int, cache_dir: Path | str = "cache") -> np.ndarray:
    """(N, size, size, 4) uint8 array of ``ids`` (read-only memmap), building the cache if needed."""
    path = cache_file(dataset, split, ids, size, Path(cache_dir))
    if not path.is_file():
        _build(dataset, split, ids, size, path)
    return np.load(path, mmap_mode="r")


def _build(dataset: Dataset, split: str, ids: list[str], size: int, path: Path) -> None:
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), size, size, len(STAINS)))
        fill = partial(_read_into, out, dataset, split, ids, size)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            list(
                tqdm(pool.map(fill, range(len(ids))), total=len(ids), desc=f"caching {split} at {size}px", leave=False)
            )
        out.flush()


def _read_into(out: np.ndarray, dataset: Dataset, split: str, ids: list[str], size: int, i: int) -> None:
    out[i] = read_image(dataset.image_paths(split, ids[i]), size)
