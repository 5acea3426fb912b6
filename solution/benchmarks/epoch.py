"""Where a demo fold's CPU time goes: ``python -m solution.bench epoch``.

Trains fold 0 of each demo recipe for ``EPOCHS`` epochs on the demo's data (``python -m solution.synthetic``'s
defaults) through the kit's own ``train_fold`` under cProfile, in the kit's layout (channels-last) and in
the contiguous layout it used on the CPU before, and times a trainer's start in a subprocess.

- ``epoch_<recipe>_seconds``: one training epoch in the kit's layout (the mean of ``EPOCHS``), and
  ``epoch_<recipe>_<part>_seconds`` what each part of an epoch takes: ``model`` (forward and backward),
  ``optimizer`` (the steps and the EMA), ``batch_transform`` (stain mixing, normalisation and the random flips,
  on the device), ``validation`` (its forward passes), ``cutoffs`` (the fitted macro-F1), ``checkpoints``
  (``last.pt`` and ``best.pt``) and ``logs`` (history and TensorBoard).
- ``fold_<recipe>_<part>_seconds``, once per fold: ``cache`` (opening the pixel caches) and ``tta`` (the
  fold's final d4 predictions of its validation and test images).
- ``epoch_<recipe>_channels_last_speedup``: a training epoch's images/s channels-last over contiguous.
- ``process_start_seconds``: a trainer's start and exit, ``python -m solution.train --help`` (every import a
  trainer makes) in a fresh interpreter; ``process_start_collector_on_seconds`` the same start from ``python -c``,
  which keeps the cyclic garbage collector on while it imports (``solution.core.startup``), and
  ``process_start_speedup`` the ratio of the two.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from solution.artifacts.folds import Folds, ensure_folds
from solution.core.workspace import DEMO_CONFIGS, KIT_DIR
from solution.data.layout import Dataset, open_dataset
from solution.data.synthetic import generate
from solution.training import loop
from solution.training.config import ExperimentConfig, load_config
from solution.training.numerics import Numerics

DEMO_DATA: dict[str, Any] = {}  # python -m solution.synthetic's defaults: the demo's data
EPOCHS = 3
PACKAGE_DIR = str(KIT_DIR / "solution")  # the profile names the kit's files by path

# part -> (module file, function, the caller it is counted under; None: every call), from the profile's
# cumulative times
PARTS: dict[str, tuple[str, str, str | None]] = {
    "optimizer": ("training/loop.py", "_update", "train_one_epoch"),
    "batch_transform": ("data/batch.py", "__call__", "train_one_epoch"),
    "validation": ("training/loop.py", "validate", None),
    "cutoffs": ("scoring/thresholds.py", "fitted_macro_f1", "validate"),
    "checkpoints": ("artifacts/runs.py", "save_state", None),
    "logs": ("training/loop.py", "_end_of_epoch", None),
    "cache": ("training/loop.py", "_open_train_cache", None),
    "tta": ("training/loop.py", "_finish", None),
}
PER_FOLD = ("cache", "tta")


def _cumulative(stats: dict[Any, Any], module: str, name: str, caller: str | None = None) -> float:
    """Seconds spent in ``module``'s function ``name`` (a path under solution/), under the calls from ``caller``
    only if given."""
    total = 0.0
    for (file, _, func), (_, _, _, cumulative, callers) in stats.items():
        if func == name and file == f"{PACKAGE_DIR}/{module}":
            total += cumulative if caller is None else sum(c[3] for k, c in callers.items() if k[2] == caller)
    return total


def _profile_fold(cfg: ExperimentConfig, dataset: Dataset, folds: Folds, runs: Path, channels_last: bool) -> dict:
    """Train fold 0 of ``cfg`` under cProfile, in the given layout; its profile and history."""
    real = loop.resolve_numerics

    def in_layout(*args: Any) -> Numerics:
        return replace(real(*args), channels_last=channels_last)

    profiler = cProfile.Profile()
    with mock.patch.object(loop, "resolve_numerics", in_layout):
        metrics = profiler.runcall(loop.train_fold, cfg, dataset, folds, 0, runs)
    return {"stats": pstats.Stats(profiler).stats, "history": metrics["history"]}  # type: ignore[attr-defined]


def _figures(name: str, fold: dict[str, Any], contiguous: dict[str, Any]) -> dict[str, float]:
    stats = fold["stats"]
    parts = {part: _cumulative(stats, *where) for part, where in PARTS.items()}
    parts["logs"] -= parts["checkpoints"]  # _end_of_epoch saves the checkpoints and writes the logs
    parts["validation"] -= parts["cutoffs"]
    epochs = _cumulative(stats, "training/loop.py", "train_one_epoch")
    parts["model"] = epochs - parts["optimizer"] - parts["batch_transform"]
    speed = [sum(h["images_per_s"] for h in f["history"]) / EPOCHS for f in (fold, contiguous)]
    figures = {f"epoch_{name}_seconds": sum(h["seconds"] for h in fold["history"]) / EPOCHS}
    for part, seconds in sorted(parts.items()):
        once = part in PER_FOLD
        figures[f"{'fold' if once else 'epoch'}_{name}_{part}_seconds"] = seconds if once else seconds / EPOCHS
    figures[f"epoch_{name}_channels_last_speedup"] = speed[0] / speed[1]
    return figures


# ``python -m solution.train --help`` as ``python -c`` runs it: the kit leaves the collector on
TRAIN_HELP_FROM_C = (
    "import runpy, sys; sys.argv = ['train', '--help']; runpy.run_module('solution.train', run_name='__main__')"
)


def _start_seconds(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _process_start() -> dict[str, float]:
    kit, collector_on = _start_seconds("-m", "solution.train", "--help"), _start_seconds("-c", TRAIN_HELP_FROM_C)
    return {
        "process_start_seconds": kit,
        "process_start_collector_on_seconds": collector_on,
        "process_start_speedup": collector_on / kit,
    }


def run() -> dict[str, float]:
    """Profile fold 0 of every demo recipe in both layouts; print each part's share; the figures."""
    figures: dict[str, float] = {}
    # in its own folder: the folds' pixel caches (the workspace's cache/) go with it, not to the caller's folder
    with tempfile.TemporaryDirectory(prefix="epoch-") as tmp, contextlib.chdir(tmp):
        work = Path(tmp)
        data = generate(work / "data", **DEMO_DATA)
        dataset, folds = open_dataset(data), ensure_folds(data, work / "folds", None, None, False)
        print(f"fold 0 of each demo recipe, {EPOCHS} epochs, {torch.get_num_threads()} torch threads")
        for config in sorted(DEMO_CONFIGS.glob("*.yaml")):
            cfg = replace(load_config(config), epochs=EPOCHS, num_workers=0)
            kit, contiguous = (
                _profile_fold(cfg, dataset, folds, work / layout, layout == "channels_last")
                for layout in ("channels_last", "contiguous")
            )
            figures |= _figures(config.stem, kit, contiguous)
    figures |= _process_start()
    print(f"{'figure':<48}{'value':>10}")
    for name, value in figures.items():
        print(f"{name:<48}{value:>10.3f}")
    return figures
