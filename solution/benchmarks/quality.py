"""How well the recipes learn: ``python -m solution.bench quality [--configs DIR]``.

Trains every recipe of ``DIR`` (default configs/demo) on a second synthetic dataset, ``QUALITY``:
another seed and other generator settings than the demo's data (denser, dimmer fields, and label noise
in train.csv while test_labels.csv stays true), so a change that only fits the demo's data shows. The
kit's own commands run as subprocesses in a temporary working folder: ``python -m solution.synthetic``,
``scripts/train_folds.sh``, ``python -m solution.stack`` and ``python -m solution.make_submission``.

- ``quality_test_macro_f1``: the submission's macro-F1 on the synthetic test labels.
- ``quality_nested_macro_f1``: make_submission's nested OOF estimate of the submission it picked
  (scored against the noisy training labels).
- ``quality_seconds``: wall-clock seconds of the whole run, data generation included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from solution.artifacts.submissions import read_sidecar
from solution.core.errors import ConfigError, KitError
from solution.core.workspace import DEMO_CONFIGS, KIT_DIR

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class QualityData:
    """The settings of ``python -m solution.synthetic`` for the quality dataset."""

    n_train: int
    n_test: int
    size: int
    seed: int
    density: float
    brightness: float
    label_noise: float

    def options(self) -> list[str]:
        """The command-line options that generate this dataset."""
        return [
            f"--n-train={self.n_train}",
            f"--n-test={self.n_test}",
            f"--size={self.size}",
            f"--seed={self.seed}",
            f"--density={self.density}",
            f"--brightness={self.brightness}",
            f"--label-noise={self.label_noise}",
        ]


# Smaller than the demo's 1200 + 400 fields, so that the bench takes about the demo's time; a seed whose folds
# balance within the default --max-fold-imbalance of python -m solution.folds (seeds 1 and 3 do not).
QUALITY = QualityData(n_train=800, n_test=300, size=64, seed=5, density=1.3, brightness=0.8, label_noise=0.05)


class StepFailed(KitError):
    """A command of the pipeline exited with an error."""


def recipes(configs: Path) -> list[Path]:
    """The YAML recipes of the folder ``configs``, sorted; refused when there are none."""
    found = sorted(configs.glob("*.yaml"))
    if not found:
        raise ConfigError(f"no *.yaml recipes in {configs}")
    return found


def _environment() -> dict[str, str]:
    """This interpreter first on PATH and this kit first on PYTHONPATH, so every step runs this code."""
    env = dict(os.environ, TQDM_DISABLE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(KIT_DIR), env.get("PYTHONPATH", "")]))
    return env


def run_step(command: list[str], work: Path, log_file: Path) -> float:
    """Run ``command`` in ``work`` with its output appended to ``log_file``; its seconds.

    A failure raises ``StepFailed`` with the command and the last lines of its output.
    """
    start = time.perf_counter()
    with log_file.open("a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        status = subprocess.run(command, cwd=work, env=_environment(), stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-LOG_TAIL_LINES:])
        raise StepFailed(f"{' '.join(command)} exited with status {status}; its output ended:\n{tail}")
    return time.perf_counter() - start


def pipeline(configs: list[Path], data: QualityData) -> list[tuple[str, list[str]]]:
    """The steps of one quality run, each (name, command), as run in the working folder."""
    python = [sys.executable, "-m"]
    return [
        ("data (python -m solution.synthetic)", python + ["solution.synthetic", "data", *data.options()]),
        (
            "folds, training, TTA (train_folds.sh)",
            ["bash", str(KIT_DIR / "scripts" / "train_folds.sh"), "--data", "data", *map(str, configs)],
        ),
        ("stack (python -m solution.stack)", python + ["solution.stack"]),
        ("submission (make_submission)", python + ["solution.make_submission", "--out", "submission.csv"]),
    ]


def run(configs: Path = DEMO_CONFIGS) -> dict[str, float]:
    """Train the recipes of ``configs`` on the ``QUALITY`` dataset, print the step times; the figures."""
    found = [path.resolve() for path in recipes(configs)]
    print(f"recipes: {', '.join(path.stem for path in found)} (from {configs}); data: {' '.join(QUALITY.options())}")
    print(f"{'step':<40}{'seconds':>10}")
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        work = Path(tmp)
        for name, command in pipeline(found, QUALITY):
            seconds = run_step(command, work, work / "steps.log")
            total += seconds
            print(f"{name:<40}{seconds:>10.0f}", flush=True)
        sidecar = read_sidecar(work / "submission.csv")
    if sidecar.test_macro_f1 is None:
        raise StepFailed("make_submission found no test_labels.csv beside the synthetic data")
    print(f"picked {sidecar.source} with rule {sidecar.rule}")
    return {
        "quality_test_macro_f1": sidecar.test_macro_f1,
        "quality_nested_macro_f1": sidecar.nested_macro_f1,
        "quality_seconds": total,
    }
