"""The pixel cache: contents, resume after a failure or a kill, stale detection, errors, stats, disk check."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ctrl_c_enabled

from solution import cache as cache_command
from solution.core.errors import DatasetError
from solution.core.fileio import exclusive
from solution.data import cache, cache_worker
from solution.data.cache import load_images, make_plan, open_cache
from solution.data.images import read_image
from solution.data.layout import open_dataset

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
CHUNK = 8  # the tiny dataset's 40 training images make 5 chunks


class Decodes:
    """Stands in for read_image in the cache's worker module: counts the images decoded, optionally failing at one."""

    def __init__(self, fail_at: int | None = None):
        self.count = 0
        self.fail_at = fail_at

    def __call__(self, paths, size):
        if self.count == self.fail_at:
            raise RuntimeError("injected failure")
        self.count += 1
        return read_image(paths, size)


def patch_decodes(monkeypatch, fail_at: int | None = None) -> Decodes:
    decodes = Decodes(fail_at)
    monkeypatch.setattr(cache_worker, "read_image", decodes)
    return decodes


def build(ds, cache_dir, workers=1, split="train"):
    ids = ds.train_ids if split == "train" else ds.test_ids
    return load_images(ds, split, ids, SIZE, cache_dir, workers=workers, chunk_size=CHUNK)


def plan(ds, cache_dir):
    return make_plan(ds, "train", ds.train_ids, SIZE, cache_dir, CHUNK)


def decoded(ds) -> np.ndarray:
    return np.stack([read_image(ds.image_paths("train", i), SIZE) for i in ds.train_ids])


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} - {cache.LOCK_FILE}


def done_chunks(p) -> set[int]:
    return {int(k) for k in json.loads(p.progress.read_text())["chunks"]}


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def ds(tiny_dataset):
    return open_dataset(tiny_dataset)


def test_cache_holds_the_decoded_images_read_only_beside_its_stats(ds, cache_dir):
    images = build(ds, cache_dir)
    assert isinstance(images, np.memmap) and not images.flags.writeable
    assert images.shape == (40, SIZE, SIZE, 4) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, decoded(ds))
    p = plan(ds, cache_dir)
    assert names(cache_dir) == {p.final.name, p.stats.name}


def test_worker_processes_build_the_same_cache_and_stats(ds, cache_dir):
    one, two = cache_dir / "one", cache_dir / "two"
    np.testing.assert_array_equal(build(ds, two, workers=2), build(ds, one, workers=1))
    assert plan(ds, one).stats.read_text() == plan(ds, two).stats.read_text()


def test_stain_stats_match_numpy_on_the_cached_pixels(ds, cache_dir):
    _, stats = open_cache(ds, "train", ds.train_ids, SIZE, cache_dir, workers=2, chunk_size=CHUNK)
    pixels = build(ds, cache_dir).reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(stats.mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.diag(stats.cov), pixels.var(0), rtol=1e-9)
    # the correlations come from every 4th row and column, the variances from every pixel
    full = np.cov(pixels.T, bias=True)
    sample = build(ds, cache_dir)[:, ::4, ::4].reshape(-1, 4).astype(np.float64)
    correlation = np.corrcoef(sample.T)
    np.testing.assert_allclose(stats.cov, correlation * np.sqrt(np.outer(np.diag(full), np.diag(full))), rtol=1e-9)


def test_interrupted_build_resumes_with_only_the_missing_chunks(ds, cache_dir, monkeypatch):
    patch_decodes(monkeypatch, fail_at=3 * CHUNK + 2)
    with pytest.raises(RuntimeError, match="injected"):
        build(ds, cache_dir / "cache")
    p = plan(ds, cache_dir / "cache")
    assert names(p.cache_dir) == {p.partial.name, p.progress.name}
    assert done_chunks(p) == {0, 1, 2}

    decodes = patch_decodes(monkeypatch)
    images = build(ds, cache_dir / "cache")
    assert decodes.count == 40 - 3 * CHUNK
    np.testing.assert_array_equal(images, decoded(ds))
    assert names(p.cache_dir) == {p.final.name, p.stats.name}
    build(ds, cache_dir / "uninterrupted")
    assert p.stats.read_text() == plan(ds, cache_dir / "uninterrupted").stats.read_text()


KILL_SCRIPT = """
import os, signal, sys
from solution.data import cache, cache_worker
from solution.data.layout import open_dataset

data, cache_dir, workers, module, target, after = sys.argv[1:]
module = getattr(sys.modules["solution.data"], module)
real = getattr(module, target)
calls = 0
def call_or_die(*args):
    global calls
    if calls == int(after):
        os.kill(os.getpid(), signal.SIGKILL)
    calls += 1
    return real(*args)

setattr(module, target, call_or_die)
ds = open_dataset(data)
cache.load_images(ds, "train", ds.train_ids, {size}, cache_dir, workers=int(workers), chunk_size={chunk})
"""


def lock_frees_within(folder: Path, seconds: float) -> bool:
    """Whether the cache folder's lock can be taken within ``seconds``."""
    fd = os.open(folder / cache.LOCK_FILE, os.O_RDONLY | os.O_CREAT)
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "workers, module, target, after",
    [
        (1, "cache_worker", "read_image", 2 * CHUNK + 3),  # mid-chunk
        (2, "cache", "_write_progress", 3),  # after the 2nd chunk's record
    ],
    ids=["in-process", "worker-processes"],
)
def test_killed_build_leaves_only_its_named_partial_and_resumes(
    ds, cache_dir, monkeypatch, workers, module, target, after
):
    script = KILL_SCRIPT.format(size=SIZE, chunk=CHUNK)
    args = [str(ds.root), str(cache_dir), str(workers), module, target, str(after)]
    run = subprocess.run([sys.executable, "-c", script, *args], check=False, cwd=ROOT)
    assert run.returncode == -signal.SIGKILL
    assert lock_frees_within(cache_dir, 10)  # orphaned workers end with their parent
    p = plan(ds, cache_dir)
    assert names(cache_dir) == {p.partial.name, p.progress.name}  # no hidden temporary files
    assert len(done_chunks(p)) == 2

    decodes = patch_decodes(monkeypatch)
    np.testing.assert_array_equal(build(ds, cache_dir), decoded(ds))
    assert decodes.count == 40 - 2 * CHUNK
    assert names(cache_dir) == {p.final.name, p.stats.name}


def rewrite(path: Path, value: int) -> None:
    """Overwrite an image file with a uniform image of the same size (a new mtime, so a new identity)."""
    shape = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape
    time.sleep(0.01)  # past the file system's timestamp granularity
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))


def test_edited_image_rebuilds_the_cache_and_removes_the_old_ones(ds, cache_dir):
    before = np.array(build(ds, cache_dir))
    old = plan(ds, cache_dir)
    (cache_dir / f"{old.stem}.npy").write_bytes(b"the earlier cache's name for these images")
    rewrite(ds.image_paths("train", ds.train_ids[7])[1], 200)
    after = build(ds, cache_dir)
    assert (after[7, ..., 1] == 200).all()
    assert (before[7, ..., 1] != 200).any()
    np.testing.assert_array_equal(np.delete(after, 7, axis=0), np.delete(before, 7, axis=0))
    new = plan(ds, cache_dir)
    assert new.final != old.final
    assert names(cache_dir) == {new.final.name, new.stats.name}


def test_files_edited_during_an_interrupted_build_redo_only_their_chunks(ds, cache_dir, monkeypatch):
    patch_decodes(monkeypatch, fail_at=4 * CHUNK)
    with pytest.raises(RuntimeError):
        build(ds, cache_dir)
    rewrite(ds.image_paths("train", ds.train_ids[CHUNK + 1])[0], 90)
    decodes = patch_decodes(monkeypatch)
    images = build(ds, cache_dir)
    assert decodes.count == 2 * CHUNK  # the edited image's chunk and the one never done
    assert (images[CHUNK + 1, ..., 0] == 90).all()
    np.testing.assert_array_equal(images, decoded(ds))


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_image_is_named_and_the_cache_not_completed(ds, cache_dir, workers):
    bad = ds.image_paths("train", ds.train_ids[13])[2]
    good = bad.read_bytes()
    bad.write_bytes(b"")
    with pytest.raises(DatasetError, match=re.escape(f"unreadable image: {bad}")):
        build(ds, cache_dir, workers=workers)
    p = plan(ds, cache_dir)
    assert not p.final.exists() and not p.stats.exists()
    assert 1 not in done_chunks(p)

    bad.write_bytes(good)
    np.testing.assert_array_equal(build(ds, cache_dir, workers=workers), decoded(ds))


def test_missing_image_file_is_named_before_anything_is_written(ds, cache_dir):
    gone = ds.image_paths("train", ds.train_ids[3])[3]
    gone.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"missing image file: {gone}")):
        build(ds, cache_dir / "cache")
    assert not (cache_dir / "cache").exists()


def test_abandoned_partials_and_the_old_caches_leftovers_are_removed(ds, cache_dir, monkeypatch):
    patch_decodes(monkeypatch, fail_at=CHUNK + 1)
    with pytest.raises(RuntimeError):
        build(ds, cache_dir)
    abandoned = plan(ds, cache_dir)
    assert abandoned.partial.exists()
    (cache_dir / f".{abandoned.stem}.npy.x8k2m1.tmp").write_bytes(b"killed before the resumable cache")
    patch_decodes(monkeypatch)
    build(ds, cache_dir, split="test")
    test_plan = make_plan(ds, "test", ds.test_ids, SIZE, cache_dir, CHUNK)
    assert names(cache_dir) == {test_plan.final.name, test_plan.stats.name}


def test_partial_with_another_chunk_size_is_started_again(ds, cache_dir, monkeypatch):
    patch_decodes(monkeypatch, fail_at=CHUNK + 1)
    with pytest.raises(RuntimeError):
        build(ds, cache_dir)
    decodes = patch_decodes(monkeypatch)
    images = load_images(ds, "train", ds.train_ids, SIZE, cache_dir, workers=1, chunk_size=CHUNK // 2)
    assert decodes.count == 40
    np.testing.assert_array_equal(images, decoded(ds))


def test_too_little_disk_stops_before_writing_anything(ds, cache_dir, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DatasetError, match=re.escape("it needs 40.0 KiB, 1,000 B is free")):
        build(ds, cache_dir)
    assert "train at 16 px: 40 images, 40.0 KiB" in capsys.readouterr().out
    assert names(cache_dir) == set()


def test_a_build_waits_for_the_folder_lock_and_reuses_what_was_built_meanwhile(ds, cache_dir, monkeypatch):
    decodes = patch_decodes(monkeypatch)
    waiting = threading.Thread(target=build, args=(ds, cache_dir))
    cache_dir.mkdir()
    with exclusive(cache_dir / cache.LOCK_FILE, "the test's hold", wait=True):
        waiting.start()
        time.sleep(0.2)
        assert waiting.is_alive()
        cache._build(plan(ds, cache_dir), workers=1)
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    assert decodes.count == 40  # the waiting build found the cache complete and decoded nothing


def test_main_builds_every_split_and_reports_user_errors_without_traceback(tiny_dataset, cache_dir, capsys):
    cache_command.main(
        ["--data", str(tiny_dataset), "--size", str(SIZE), "--cache-dir", str(cache_dir), "--workers", "1"]
    )
    out = capsys.readouterr().out
    assert "train at 16 px: 40 images" in out and "test at 16 px: 12 images" in out
    assert len(list(cache_dir.glob("*.stats.json"))) == 2
    with pytest.raises(SystemExit, match="^error: dataset directory not found"):
        cache_command.main(["--data", str(cache_dir / "none"), "--size", str(SIZE)])


def test_stage_run_as_main_builds_with_worker_processes(ds, cache_dir):
    """Under ``python -m solution.cache`` the command is ``__main__``, which workers do not run: what they
    run must be found by an importable name (40 images make two parts, so two workers)."""
    cmd = [sys.executable, "-m", "solution.cache", "--data", str(ds.root), "--size", str(SIZE)]
    cmd += ["--cache-dir", str(cache_dir), "--workers", "2", "--splits", "train"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    np.testing.assert_array_equal(load_images(ds, "train", ds.train_ids, SIZE, cache_dir), decoded(ds))


def test_benchmark_runs_on_a_tiny_dataset(monkeypatch, capsys):
    from solution.benchmarks import data_cache

    tiny = {
        "FIELDS": 4,
        "IMAGES": 24,
        "SOURCE_SIZE": 32,
        "CACHE_SIZE": 16,
        "BATCH": 4,
        "BUILDS": 1,
    }
    for name, value in tiny.items():
        monkeypatch.setattr(data_cache, name, value)
    figures = data_cache.run(workers=2)
    assert set(figures) == {"cache_build_ratio", "cache_read_speedup"}
    assert all(np.isfinite(v) and v > 0 for v in figures.values())
    assert "cache build, 2 workers" in capsys.readouterr().out


BUSY_PARENT = """
import sys, threading, time
import cv2, numpy as np
from solution.data.cache import load_images
from solution.data.layout import open_dataset
a = np.random.rand(600, 600)
a @ a  # OpenBLAS's thread pool is up
cv2.resize(np.zeros((512, 512), np.uint8), (256, 256))  # and OpenCV's
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
ds = open_dataset(sys.argv[1])
print(load_images(ds, "train", ds.train_ids, 16, sys.argv[2], workers=2, chunk_size=4).shape)
"""


def test_worker_processes_start_clean_from_a_busy_parent(ds, cache_dir):
    """Workers forked from a process with live BLAS/OpenCV thread pools could hang forever (seen under xdist)."""
    cmd = [sys.executable, "-c", BUSY_PARENT, str(ds.root), str(cache_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == f"({len(ds.train_ids)}, 16, 16, 4)"


MAIN_SCRIPT = """
import sys
from solution.data.cache import load_images
from solution.data.layout import open_dataset
print("main module ran", flush=True)
if __name__ == "__main__":
    ds = open_dataset(sys.argv[1])
    print(load_images(ds, "train", ds.train_ids, 16, sys.argv[2], workers=2, chunk_size=4).shape)
"""


def test_worker_processes_do_not_run_the_callers_main_module(ds, cache_dir, tmp_path):
    """multiprocessing runs the parent's __main__ in every worker: for `python -m solution.train`, 10 s each."""
    script = tmp_path / "caller.py"
    script.write_text(MAIN_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(ds.root), str(cache_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines.count("main module ran") == 1
    assert lines[-1] == f"({len(ds.train_ids)}, 16, 16, 4)"
    assert "Warning" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_ends_a_build_at_once_in_one_line_and_a_rerun_finishes_it(ds, cache_dir, workers):
    """Ctrl-C (an INT to the process group) while a source file blocks its reader (a FIFO: a stuck network
    disk) ends the build with status 130 and one line, the workers with it; nothing is left as the cache."""
    stuck = ds.image_paths("train", ds.train_ids[30])[1]
    image = stuck.read_bytes()
    stuck.unlink()
    os.mkfifo(stuck)
    argv = ["--data", str(ds.root), "--size", str(SIZE), "--cache-dir", str(cache_dir), "--workers", workers]
    cmd = [sys.executable, "-m", "solution.cache", *argv, "--splits", "train"]
    run = subprocess.Popen(
        cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=ctrl_c_enabled
    )
    try:
        p = plan(ds, cache_dir)
        for _ in range(600):  # until the build is under way
            if p.progress.is_file():
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the workers (or this process) reach the FIFO
        start = time.monotonic()
        os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - start < 3 and run.returncode == 130, err
    lines = [line for line in err.splitlines() if not line.startswith("caching") and line.strip()]
    assert len(lines) == 1 and "error: interrupted; the train cache at 16 px" in lines[0], err
    assert "was not finished: rerun to resume its build" in lines[0]
    assert lock_frees_within(cache_dir, 2) and not p.final.exists()
    stuck.unlink()
    stuck.write_bytes(image)
    np.testing.assert_array_equal(build(ds, cache_dir), decoded(ds))
