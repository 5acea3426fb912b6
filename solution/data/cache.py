"""A resized uint8 copy of every image of a split, stored once as a memory-mapped .npy.

Decoding four PNGs per image per epoch dominates training time on small
models; the cache decodes each image once, in worker processes, and every fold
and experiment at that size reuses it. ``python -m solution.cache`` builds
it up front; ``load_images`` builds it on first use. In the cache folder:

    {split}-{size}px-{data}-{files}.npy         (N, size, size, 4) uint8, stains R, G, B, Y
    {split}-{size}px-{data}-{files}.stats.json  the stains' mean and covariance over every pixel
    {split}-{size}px-{data}.partial.npy         a build in progress, filled chunk by chunk...
    {split}-{size}px-{data}.partial.json        ...and its finished chunks with their pixel sums

``data`` hashes the dataset path, split, size and Ids; ``files`` hashes the
name, size and mtime of every source file, so an edited image gives a new
cache and the one it supersedes is removed. The partial file's name leaves
``files`` out and each finished chunk records a fingerprint of its own source
files instead, so a build that stopped at a bad image resumes once the image
is fixed and redoes only that image's chunk. A cache folder runs one build at
a time (a lock on the folder), so any other partial file there is an abandoned
build and is removed. Ctrl-C ends a build at once, its workers with it, as an
``Interrupted`` that says to rerun: the finished chunks are kept for the rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing, contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from solution.core.errors import DatasetError, Interrupted
from solution.core.fileio import atomic_write_json, exclusive, read_json
from solution.core.workspace import CACHE_DIR
from solution.data import cache_worker
from solution.data.cache_worker import Sums
from solution.data.layout import STAINS, Dataset
from solution.data.stats import StainStats

CHUNK_SIZE = 256  # images recorded as one unit of progress
PART_SIZE = 32  # images per task handed to a worker: small, so that the workers finish together
SMALL_BUILD_BYTES = 256 * 2**20  # below this, decoding in this process beats starting worker processes
SPLITS = ("train", "test")
LOCK_FILE = ".build.lock"  # one build at a time per cache folder
log = logging.getLogger(__spec__.name)
_UNITS = ("B", "KiB", "MiB", "GiB")

Task = tuple[int, int]  # (chunk, first row of the part)


@dataclass(frozen=True)
class Plan:
    """One split at one size: its source files, chunks and file names in the cache folder."""

    split: str
    size: int
    paths: list[tuple[Path, ...]]
    chunk_size: int
    cache_dir: Path
    stem: str  # {split}-{size}px-{data}
    files_key: str
    fingerprints: list[str]  # per chunk, of its source files

    @property
    def final(self) -> Path:
        return self.cache_dir / f"{self.stem}-{self.files_key}.npy"

    @property
    def stats(self) -> Path:
        return self.cache_dir / f"{self.stem}-{self.files_key}.stats.json"

    @property
    def partial(self) -> Path:
        return self.cache_dir / f"{self.stem}.partial.npy"

    @property
    def progress(self) -> Path:
        return self.cache_dir / f"{self.stem}.partial.json"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size, self.size, len(STAINS))

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * len(STAINS)

    def chunk(self, k: int) -> range:
        return range(k * self.chunk_size, min((k + 1) * self.chunk_size, len(self.paths)))

    def is_complete(self) -> bool:
        return self.final.is_file() and self.stats.is_file()


def _hash(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _identity(paths: tuple[Path, ...]) -> str:
    """Name, size and mtime of one image's stain files: what changes when a file is rewritten."""
    parts = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DatasetError(f"missing image file: {path}") from None
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(parts)


def _stem(dataset: Dataset, split: str, ids: list[str], size: int) -> str:
    """``{split}-{size}px-{data}``: the name of the cache of ``ids`` at ``size`` without its files' key."""
    return f"{split}-{size}px-{_hash([str(dataset.root.resolve()), split, str(size), *ids])}"


def make_plan(
    dataset: Dataset,
    split: str,
    ids: list[str],
    size: int,
    cache_dir: Path | str = CACHE_DIR,
    chunk_size: int = CHUNK_SIZE,
) -> Plan:
    """Stat every source file (once) and name the cache of ``ids`` at ``size``."""
    paths = [dataset.image_paths(split, i) for i in ids]
    identities = [_identity(p) for p in paths]
    fingerprints = [_hash(identities[k : k + chunk_size]) for k in range(0, len(ids), chunk_size)]
    return Plan(
        split=split,
        size=size,
        paths=paths,
        chunk_size=chunk_size,
        cache_dir=Path(cache_dir),
        stem=_stem(dataset, split, ids, size),
        files_key=_hash(identities),
        fingerprints=fingerprints,
    )


def load_images(
    dataset: Dataset,
    split: str,
    ids: list[str],
    size: int,
    cache_dir: Path | str = CACHE_DIR,
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> np.ndarray:
    """(N, size, size, 4) uint8 array of ``ids`` (read-only memmap), building the cache if needed."""
    return open_cache(dataset, split, ids, size, cache_dir, workers=workers, chunk_size=chunk_size)[0]


def open_cache(
    dataset: Dataset,
    split: str,
    ids: list[str],
    size: int,
    cache_dir: Path | str = CACHE_DIR,
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[np.ndarray, StainStats]:
    """The images of ``ids`` (as ``load_images``) and their stains' mean and covariance on the 0..255 scale,
    building the cache if needed. Naming the cache means a ``stat`` of every source file (a minute for the
    competition and HPAv18 sets on a network disk), so a caller that needs both asks once."""
    plan = make_plan(dataset, split, ids, size, cache_dir, chunk_size)
    return open_plan(plan, workers), read_stats(plan)


def open_plan(plan: Plan, workers: int | None = None) -> np.ndarray:
    """The images of ``plan`` (read-only memmap), building the cache if needed: for a caller that has the plan
    already (its ``files_key`` names the source files as they are now)."""
    ensure_cache(plan, workers)
    return _open(plan)


def find_cache(
    dataset: Dataset, split: str, ids: list[str], min_size: int, cache_dir: Path | str = CACHE_DIR
) -> tuple[np.ndarray, int] | None:
    """The images of ``ids`` (read-only memmap) and their size, from the complete cache of the smallest size
    >= ``min_size`` in ``cache_dir``; None when there is none. Builds nothing.

    A stage that needs small images of a split (hashing) then reads, and resizes, the training cache
    (512 px, say) instead of decoding every image again. Only a size whose cache file exists for these
    Ids costs the ``stat`` of every source file that naming the complete cache needs.
    """
    sizes = set()
    for path in Path(cache_dir).glob(f"{split}-*px-*.npy"):
        text = path.name[len(split) + 1 :].split("px-", 1)[0]
        if text.isdigit() and int(text) >= min_size and not path.name.endswith(".partial.npy"):
            sizes.add(int(text))
    for size in sorted(sizes):
        if not any(Path(cache_dir).glob(f"{_stem(dataset, split, ids, size)}-*.npy")):
            continue
        plan = make_plan(dataset, split, ids, size, cache_dir)
        if plan.is_complete():
            return _open(plan), size
    return None


def _open(plan: Plan) -> np.ndarray:
    """The complete cache of ``plan`` as a read-only memmap, refused when truncated or of another shape."""
    try:
        images = np.load(plan.final, mmap_mode="r")
    except (ValueError, OSError) as exc:  # a truncated or overwritten file
        raise DatasetError(f"{plan.final} is corrupt ({exc}): delete it and rerun to rebuild it") from None
    if images.shape != plan.shape:
        raise DatasetError(
            f"{plan.final} holds {images.shape}, expected {plan.shape}: delete it and rerun to rebuild it"
        )
    return images


def read_stats(plan: Plan) -> StainStats:
    return StainStats.from_dict(read_json(plan.stats))


def ensure_cache(plan: Plan, workers: int | None = None) -> None:
    """Build (or finish) the cache of ``plan`` unless it is complete.

    ``workers`` defaults to the CPU count, or to 1 (this process) for a cache under ``SMALL_BUILD_BYTES``,
    which decodes faster than worker processes start.
    """
    if plan.is_complete():
        return
    if workers is None:
        workers = 1 if len(plan.paths) * plan.image_bytes < SMALL_BUILD_BYTES else _cpu_count()
    plan.cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(plan.cache_dir / LOCK_FILE, f"the cache folder {plan.cache_dir}", wait=True):
        if not plan.is_complete():  # another process may have built it while this one waited
            try:
                _build(plan, workers)
            except KeyboardInterrupt:  # Ctrl-C: the finished chunks stay in the partial file, for the rerun
                raise Interrupted(
                    f"interrupted; the {plan.split} cache at {plan.size} px in {plan.cache_dir} was not finished: "
                    "rerun to resume its build"
                ) from None


def _cpu_count() -> int:
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


def _build(plan: Plan, workers: int) -> None:
    _remove_leftovers(plan)
    done = _resumable_chunks(plan)
    todo = [k for k in range(len(plan.fingerprints)) if k not in done]
    todo_images = sum(len(plan.chunk(k)) for k in todo)
    _check_disk(plan, todo_images * plan.image_bytes, len(done))
    if not plan.partial.is_file():
        np.lib.format.open_memmap(plan.partial, mode="w+", dtype=np.uint8, shape=plan.shape)  # sparse until filled
        _write_progress(plan, done)
    bar = tqdm(
        total=len(plan.paths),
        initial=len(plan.paths) - todo_images,
        unit="img",
        desc=f"caching {plan.split} at {plan.size} px",
    )

    def record(k: int, sums: Sums) -> None:
        done[k] = {"files": plan.fingerprints[k], **sums}
        _write_progress(plan, done)
        bar.update(len(plan.chunk(k)))

    with bar:
        _fill(plan, todo, workers, record)
    _finish(plan, done)


def _remove_leftovers(plan: Plan) -> None:
    """Remove abandoned partial builds and the caches this one supersedes (same data, older files),
    including those of the kit's earlier cache: ``{stem}.npy`` and its builds' hidden temporary files."""
    ours = {plan.partial, plan.progress, plan.final, plan.stats}
    superseded = (f"{plan.stem}-*.npy", f"{plan.stem}-*.stats.json", f"{plan.stem}.npy")
    for pattern in ("*.partial.npy", "*.partial.json", ".*.npy.*.tmp", *superseded):
        for path in plan.cache_dir.glob(pattern):
            if path not in ours:
                path.unlink()


def _resumable_chunks(plan: Plan) -> dict[int, dict]:
    """Finished chunks of this plan's partial file whose source files are unchanged; a partial
    file of another shape or chunk size, or without its progress file, is removed instead."""
    progress = _read_progress(plan)
    if progress is None or progress["chunk_size"] != plan.chunk_size:
        plan.partial.unlink(missing_ok=True)  # unlink, never truncate: a new build gets a new inode
        plan.progress.unlink(missing_ok=True)
        return {}
    return {int(k): c for k, c in progress["chunks"].items() if c["files"] == plan.fingerprints[int(k)]}


def _read_progress(plan: Plan) -> dict | None:
    try:
        progress = json.loads(plan.progress.read_text())
        partial = np.load(plan.partial, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return progress if partial.shape == plan.shape and partial.dtype == np.uint8 else None


def _write_progress(plan: Plan, done: dict[int, dict]) -> None:
    chunks = {str(k): done[k] for k in sorted(done)}
    atomic_write_json(plan.progress, {"shape": list(plan.shape), "chunk_size": plan.chunk_size, "chunks": chunks})


def _check_disk(plan: Plan, to_write: int, chunks_done: int) -> None:
    """Say what the build writes; refuse, before writing anything, when the disk lacks the room."""
    n = len(plan.paths)
    resumed = (
        f" ({chunks_done} of {len(plan.fingerprints)} chunks done, {_size_text(to_write)} to write)"
        if chunks_done
        else ""
    )
    print(f"{plan.split} at {plan.size} px: {n:,} images, {_size_text(n * plan.image_bytes)}{resumed} -> {plan.final}")
    free = shutil.disk_usage(plan.cache_dir).free
    if to_write > free:
        raise DatasetError(
            f"not enough disk space in {plan.cache_dir} for the {plan.split} cache at {plan.size} px: "
            f"it needs {_size_text(to_write)}, {_size_text(free)} is free"
        )


def _size_text(nbytes: int) -> str:
    power = min(len(_UNITS) - 1, max(0, (nbytes.bit_length() - 1) // 10))
    return f"{nbytes:,} B" if power == 0 else f"{nbytes / 1024**power:,.1f} {_UNITS[power]}"


def _fill(plan: Plan, todo: list[int], workers: int, record: Callable[[int, Sums], None]) -> None:
    """Decode the chunks ``todo`` in parts of ``PART_SIZE`` images, calling ``record`` as each chunk is complete."""
    offset = np.load(plan.partial, mmap_mode="r").offset  # where the array data starts, after the .npy header
    tasks = {}
    for k in todo:
        rows = plan.chunk(k)
        for start in range(rows.start, rows.stop, PART_SIZE):
            stop = min(start + PART_SIZE, rows.stop)
            tasks[k, start] = (plan.partial, offset + start * plan.image_bytes, plan.paths[start:stop], plan.size)
    parts_left = Counter(k for k, _ in tasks)
    sums: dict[int, Sums] = {}
    with closing(_decoded(tasks, min(workers, len(tasks)))) as parts:  # closed at once, also by an exception here
        for (k, _), part in parts:
            sums[k] = _added(sums[k], part) if k in sums else part
            parts_left[k] -= 1
            if not parts_left[k]:
                record(k, sums.pop(k))


def _decoded(tasks: dict[Task, tuple], workers: int) -> Generator[tuple[Task, Sums], None, None]:
    """Run ``cache_worker.decode_part`` on every task, here or in ``workers`` processes, as each completes."""
    if workers <= 1:
        for key, args in tasks.items():
            yield key, cache_worker.decode_part(*args)
        return
    # Workers come from a forkserver: a plain fork of this process, whose other threads (torch, OpenCV,
    # a test runner's) may hold locks at that moment, left workers waiting on those locks forever.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([cache_worker.__name__])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=cache_worker.init, initargs=(os.getpid(),))
    try:
        with _ctrl_c_held(), _main_hidden():  # every worker starts at the first submit
            futures = {pool.submit(cache_worker.decode_part, *args): key for key, args in tasks.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:  # Ctrl-C, a part that failed, the caller stopping: the parts under way are not awaited
        for process in list(pool._processes.values()):  # Python 3.14's pool.terminate_workers()
            process.terminate()
        raise
    finally:
        pool.shutdown(cancel_futures=True)


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Start the forkserver ignoring Ctrl-C (SIGINT), and hold a Ctrl-C off while the workers start, raising it
    once they have (the build then ends them: ``cache_worker.init`` has them ignore it).

    A forkserver started with Python's handler gets a Ctrl-C to the process group while it imports, before it
    ignores SIGINT itself, and prints a traceback; a worker's start cut short leaves one that the forkserver
    forks after this process has gone, whose start then fails with another (``FileNotFoundError``: the pool's
    semaphores are gone). A Ctrl-C in the instant the forkserver is forked is lost. Only the main thread
    handles signals: elsewhere nothing is held off.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what the forkserver inherits
    try:
        forkserver.ensure_running()
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
    if held:
        raise KeyboardInterrupt


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start worker processes without running this process's ``__main__`` module again in each.

    multiprocessing's forkserver and spawn workers import the parent's main module so that functions
    defined there can be unpickled: for ``python -m solution.train``, all of training, some 10 s per
    worker. The decode workers run only ``cache_worker``'s functions, so the main module's name and path
    are hidden while they start (``multiprocessing.spawn.get_preparation_data`` reads them).
    """
    names = ("__spec__", "__file__")
    namespace = sys.modules["__main__"].__dict__
    saved = {name: namespace.pop(name) for name in names if name in namespace}
    namespace["__spec__"] = None
    try:
        yield
    finally:
        for name in names:
            namespace.pop(name, None)
        namespace.update(saved)


def _added(a: Sums, b: Sums) -> Sums:
    """The sums of two parts, entry by entry (exact: Python integers)."""
    return {key: _add(a[key], b[key]) for key in a}


def _add(x: Any, y: Any) -> Any:
    """``x + y`` for numbers, entry by entry for (nested) lists of them."""
    return [_add(u, v) for u, v in zip(x, y)] if isinstance(x, list) else x + y


def _finish(plan: Plan, done: dict[int, dict]) -> None:
    """Write the stats, then move the finished array into place and drop its progress file."""
    n = len(plan.paths) * plan.size * plan.size
    sums = [sum(done[k]["sum"][c] for k in done) for c in range(len(STAINS))]
    squares = [sum(done[k]["sumsq"][c] for k in done) for c in range(len(STAINS))]
    mean = [s / n for s in sums]
    std = [math.sqrt((q * n - s * s) / (n * n)) for s, q in zip(sums, squares)]  # exact integers until the division
    cov = _covariance(done, np.asarray(std))
    stats = {"stains": list(STAINS), "images": len(plan.paths), "size": plan.size, "mean": mean, "std": std}
    atomic_write_json(plan.stats, {**stats, "cov": cov.tolist()})
    os.replace(plan.partial, plan.final)
    plan.progress.unlink()


def _covariance(done: dict[int, dict], std: np.ndarray) -> np.ndarray:
    """The stains' covariance: exact variances, and correlations from the sampled pixels."""
    count = sum(done[k]["sample"] for k in done)
    mean = sum(np.asarray(done[k]["sample_sum"], np.float64) for k in done) / count
    sample_cov = sum(np.asarray(done[k]["cross"], np.float64) for k in done) / count - np.outer(mean, mean)
    sample_std = np.sqrt(np.maximum(np.diag(sample_cov), 1e-12))
    correlation = np.clip(sample_cov / np.outer(sample_std, sample_std), -1, 1)
    np.fill_diagonal(correlation, 1.0)
    return correlation * np.outer(std, std)
