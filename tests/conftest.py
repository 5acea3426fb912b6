import gc
import os
import shutil
import signal
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from solution.artifacts.folds import Folds, FoldsMeta
from solution.artifacts.oof import Manifest
from solution.artifacts.submissions import Sidecar
from solution.core.fileio import exclusive

os.environ.setdefault("TQDM_DISABLE", "1")
RAM_DISK, RAM_DISK_ROOM = Path("/dev/shm"), 4 << 30
if not {"TMPDIR", "PYTEST_DEBUG_TEMPROOT"} & os.environ.keys() and RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK):
    # The tests write and remove hundreds of MB of checkpoints, caches and copied datasets: on a RAM disk that
    # costs seconds less system time than on a disk (setup.cfg's retention policy removes a passing test's
    # folder at its end, so the RAM holds only failing tests' folders). A set TMPDIR, or too little room, wins.
    if shutil.disk_usage(RAM_DISK).free >= RAM_DISK_ROOM:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(RAM_DISK)
# As in a command's start (solution.core.startup): the test modules' imports run without the cyclic garbage
# collector, and what they made is frozen once they are collected, so that no collection during the tests, nor
# the one at the process's exit, traverses torch's and timm's million objects again.
gc.disable()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist workers share the cores: each with torch's and OpenCV's full thread pools, their
    # threads would outnumber the cores and wait on one another.
    import cv2
    import torch

    share = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(share)
    cv2.setNumThreads(share)

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Two tiny experiments that differ in backbone, channel setup, augmentation and TTA.
TINY_CONFIGS = {
    "tiny_effnet": "backbone: test_efficientnet\nchannels: rgby\nimage_size: 32\nbatch_size: 16\nepochs: 2\n"
    "lr: 0.003\naugment: light\ntta: d4\nnum_workers: 0\n",
    "tiny_convnext": "backbone: test_convnext\nchannels: ry_gy_b\nimage_size: 32\nbatch_size: 16\nepochs: 1\n"
    "lr: 0.003\naugment: flips\ntta: flip\nnum_workers: 0\n",
}


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``tmp/name``, made by ``build`` once per test session: the first pytest-xdist worker to ask builds
    it while the others wait, then all of them use it (without xdist, the one process builds it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with exclusive(root / f"{name}.lock", f"the session fixture {name}", wait=True):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_dataset_master(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the competition layout, generated once per session."""
    from solution.data.synthetic import generate

    def make(folder: Path) -> None:
        generate(folder / "data", n_train=40, n_test=12, size=32, seed=3)

    return built_once(tmp_path_factory, "master", make) / "data"


@pytest.fixture
def tiny_dataset(tiny_dataset_master, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    return Path(shutil.copytree(tiny_dataset_master, tmp_path / "data"))


@pytest.fixture(scope="session")
def trained_master(tiny_dataset_master, tmp_path_factory) -> Path:
    """A working folder in which folds were made and both tiny experiments trained and assembled, once."""
    from solution import folds, predict, train

    def make(root: Path) -> None:
        (root / "configs").mkdir(parents=True)
        for name, text in TINY_CONFIGS.items():
            (root / "configs" / f"{name}.yaml").write_text(text)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            folds.main(["--data", str(tiny_dataset_master)])
            for name in TINY_CONFIGS:
                train.main(["--config", f"configs/{name}.yaml"])
                predict.main(["--config", f"configs/{name}.yaml"])

    return built_once(tmp_path_factory, "trained", make)


@pytest.fixture
def trained(trained_master, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained working folder, made the current directory."""
    work = Path(shutil.copytree(trained_master, tmp_path / "work"))
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def hpav18_dir() -> Path:
    """Two real HPAv18 fields, reduced in size (see fixtures/hpav18/README.md)."""
    return FIXTURES / "hpav18"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` 8-bit grey pixels and holds one row: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
        + chunk(b"IEND", b"")
    )


def ctrl_c_enabled() -> None:
    """A ``preexec_fn`` for a child that a test sends SIGINT: the default disposition, as in a user's terminal. A
    shell that starts a job in the background (``cmd &``, as some CI runners do) starts it with SIGINT ignored,
    the ignore is inherited through exec, and then neither Python nor bash can catch a Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.pluginmanager.has_plugin("dsession"):
        gc.enable()  # pytest-xdist's controller: it collects nothing, its workers do


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()
    gc.enable()


def pytest_sessionfinish(session: pytest.Session) -> None:
    gc.freeze()  # what the tests left alive: the exit's collection skips it too


# The files that take longest (wall time, BENCHMARKS.md, "The test suite"), longest first: the files that mostly wait
# (on a timeout, a subprocess) then overlap the other worker's work instead of ending the run. The rest follow.
LONGEST_FILES = (
    "test_parallel_folds.py",
    "test_training.py",
    "test_rerun.py",
    "test_cache.py",
    "test_distributed.py",
    "test_package_layers.py",
    "test_faults.py",
    "test_registered_options.py",
    "test_entry_points.py",
    "test_report.py",
    "test_loader.py",
    "test_stack.py",
    "test_upload.py",
    "test_external.py",
    "test_pipeline.py",
    "test_export.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first: pytest-xdist's workers, handed one file at a time in this order
    (``--no-loadscope-reorder``), then finish together instead of one running a long file alone at the end."""
    rank = {name: k for k, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def folds_of(ids: list[str], folds_hash: str = "abc") -> Folds:
    """Folds of ``ids`` (alternating 0, 1) with the given hash, for tests of what reads prediction sets."""
    meta = FoldsMeta(seed=0, n_folds=2, labels_hash="data", folds_hash=folds_hash, data_dir=".", n_images=len(ids))
    return Folds(ids=ids, fold=np.arange(len(ids)) % 2, meta=meta)


def manifest_of(name: str, folds_hash: str = "abc") -> Manifest:
    """A minimal experiment manifest carrying ``folds_hash``."""
    return Manifest(
        name=name, kind="experiment", folds_hash=folds_hash, n_folds=2, data_dir=".", settings={}, provenance={}
    )


def a_sidecar(**values) -> dict:
    """A complete sidecar as the kit writes it, with ``values`` in it."""
    base = Sidecar(
        source="tiny_effnet",
        rule="prior",
        why="test",
        options={},
        weights=None,
        folds_hash="h",
        thresholds=[0.25] * 28,
        oof_macro_f1=0.4,
        nested_macro_f1=0.4321,
        test_images=12,
        test_images_without_label=0,
        mean_labels_per_test_image=2.0,
        mean_labels_per_train_image=1.6,
        estimates=[],
    )
    return {**base.to_json(), **values}
