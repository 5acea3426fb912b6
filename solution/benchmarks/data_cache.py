"""Benchmark of the pixel cache.

- ``cache_build_ratio``: images/s of a cache build with W worker processes, over W times the
  rate of a plain single-process loop that decodes the four PNGs and resizes them with OpenCV
  (1.0: the processes scale perfectly and chunking, writing and the stats cost nothing). The
  loop decodes as many images as each worker does in a build, so that both runs last as long:
  the best of several short runs would flatter the baseline on a machine whose speed varies.
- ``cache_read_speedup``: a training batch of random images read from the cache, against the
  same images decoded from PNG.

Rendering synthetic fields is slow, so a few are rendered and each is hard-linked under several
Ids; decoding costs the same. The PNGs and the cache are in the page cache, as they are from
the second epoch on. Each rate is the best of a few runs, the usual guard against other load on
a shared machine (what it costs is the slower runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from solution.data.cache import load_images
from solution.data.layout import STAINS, Dataset, open_dataset
from solution.data.synthetic import generate

FIELDS = 48  # distinct fields rendered...
IMAGES = 3072  # ...and linked into a training set this big
SOURCE_SIZE = 256
CACHE_SIZE = 128
BUILDS = 3  # cache builds, each between two runs of the plain loop
BATCH = 64
BATCHES = 5


def make_dataset(root: Path) -> Dataset:
    """A dataset of ``IMAGES`` training images in the competition layout, made of ``FIELDS`` rendered fields."""
    fields = generate(root / "fields", n_train=FIELDS, n_test=1, size=SOURCE_SIZE)
    data = root / "data"
    (data / "train").mkdir(parents=True)
    shutil.copytree(fields / "test", data / "test")
    shutil.copy(fields / "sample_submission.csv", data)
    rows = (fields / "train.csv").read_text().splitlines()[1:]
    lines = ["Id,Target"]
    for n in range(IMAGES):
        field_id, target = rows[n % FIELDS].split(",")
        image_id = f"{n:05d}-{field_id}"
        for stain in STAINS:
            os.link(fields / "train" / f"{field_id}_{stain}.png", data / "train" / f"{image_id}_{stain}.png")
        lines.append(f"{image_id},{target}")
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    return open_dataset(data)


def decode_plainly(paths: tuple[Path, ...], size: int) -> np.ndarray:
    """The baseline: decode each stain's PNG and resize it, nothing else."""
    planes = [np.asarray(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)) for p in paths]
    return np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in planes], axis=-1)


def decode_seconds(dataset: Dataset, ids: list[str]) -> float:
    start = time.perf_counter()
    for image_id in ids:
        decode_plainly(dataset.image_paths("train", image_id), CACHE_SIZE)
    return time.perf_counter() - start


def baseline_rate(dataset: Dataset, images: int) -> float:
    """Images/s of the plain loop on one core (OpenCV's own threads off, as in the cache's workers)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return images / decode_seconds(dataset, dataset.train_ids[:images])
    finally:
        cv2.setNumThreads(threads)


def build_rate(dataset: Dataset, cache_dir: Path, workers: int) -> float:
    start = time.perf_counter()
    load_images(dataset, "train", dataset.train_ids, CACHE_SIZE, cache_dir, workers=workers)
    return IMAGES / (time.perf_counter() - start)


def read_seconds(dataset: Dataset, images: np.ndarray) -> tuple[float, float]:
    """Seconds per batch of ``BATCH`` random images from PNG and from the cache."""
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(images), BATCH, replace=False)) for _ in range(BATCHES)]
    png = sum(decode_seconds(dataset, [dataset.train_ids[i] for i in idx]) for idx in batches)
    start = time.perf_counter()
    for idx in batches:
        np.asarray(images[idx])
    return png / BATCHES, (time.perf_counter() - start) / BATCHES


def run(workers: int = 2) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root)
        share = IMAGES // workers  # what each core decodes in a build, so both runs last as long
        singles, builds = [baseline_rate(dataset, share)], []
        for attempt in range(BUILDS):
            builds.append(build_rate(dataset, root / f"cache{attempt}", workers))
            singles.append(baseline_rate(dataset, share))
        single, build = max(singles), max(builds)
        images = load_images(dataset, "train", dataset.train_ids, CACHE_SIZE, root / "cache0")
        png, cached = read_seconds(dataset, images)
        del images
    rows = [
        ("plain loop, 1 process", f"{single:,.0f} images/s"),
        (f"cache build, {workers} workers", f"{build:,.0f} images/s"),
        (f"batch of {BATCH} from PNG", f"{png * 1e3:,.1f} ms"),
        (f"batch of {BATCH} from the cache", f"{cached * 1e3:,.2f} ms"),
    ]
    print(f"{IMAGES:,} images, {SOURCE_SIZE} px PNGs cached at {CACHE_SIZE} px")
    for name, value in rows:
        print(f"  {name:<32} {value:>16}")
    return {"cache_build_ratio": build / (workers * single), "cache_read_speedup": png / cached}
