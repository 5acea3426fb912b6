"""Reruns: the same seed gives the same results, and a stage killed anywhere (SIGKILL) and rerun
ends with the same outputs as an uninterrupted run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_CONFIGS

from solution import folds, make_submission, predict, stack, train


def run_pipeline(root: Path, data: Path) -> None:
    (root / "configs").mkdir(parents=True)
    for name, text in TINY_CONFIGS.items():
        (root / "configs" / f"{name}.yaml").write_text(text)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        folds.main(["--data", str(data)])
        for name in TINY_CONFIGS:
            train.main(["--config", f"configs/{name}.yaml"])
            predict.main(["--config", f"configs/{name}.yaml"])
        stack.main([])
        make_submission.main(["--source", "stack"])
    finally:
        os.chdir(cwd)


OUTPUTS = ["folds/folds.csv", "oof/tiny_effnet/oof.parquet", "oof/tiny_convnext/test.parquet", "oof/stack/oof.parquet"]


def test_same_seed_gives_identical_folds_predictions_cutoffs_and_submission(tiny_dataset_master, trained, tmp_path):
    run_pipeline(tmp_path / "again", tiny_dataset_master)
    stack.main([])
    make_submission.main(["--source", "stack"])
    for rel in OUTPUTS:
        assert (trained / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    first = pd.read_json(trained / "submissions" / "stack.json", typ="series")
    second = pd.read_json(tmp_path / "again" / "submissions" / "stack.json", typ="series")
    assert first["thresholds"] == second["thresholds"]
    assert (trained / "submissions" / "stack.csv").read_bytes() == (
        tmp_path / "again" / "submissions" / "stack.csv"
    ).read_bytes()


KILLER = """
import gc, importlib, os, runpy, signal, sys
module, args, targets = sys.argv[1], sys.argv[2:-1], [int(t) for t in sys.argv[-1].split(",")]
gc.disable()  # as in a command's start (solution.core.startup), and frozen before the forks, as gc.freeze advises
importlib.import_module(module)  # the imports are paid once; each run below is a fork that reuses them
gc.freeze()
gc.enable()
for target in targets:
    pid = os.fork()
    if pid == 0:
        real, count = os.replace, [0]
        def replace(*a, **k):
            count[0] += 1
            if count[0] == target:  # die just before the target-th rename of an artifact into place
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        os.replace = replace
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        os._exit(0)
    print("@@", os.waitpid(pid, 0)[1] & 0x7F, flush=True)  # the signal that ended the run
"""


def killed_at(renames: list[int], module: str, args: list[str], cwd: Path) -> list[int]:
    """Run ``module`` once per entry of ``renames``, each killed (SIGKILL) at that rename, one after another."""
    # as many torch threads as this process: floating-point sums split across threads differ in their last bits
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-c", KILLER, module, *args, ",".join(map(str, renames))]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("@@ ")]


TRAIN = ["--config", "configs/tiny_effnet.yaml", "--fold", "0"]
STAGES = {
    "solution.train": (train.main, [*TRAIN, "--runs-dir", "again"], [*TRAIN, "--runs-dir", "whole"]),
    "solution.stack": (stack.main, [], []),
    "solution.make_submission": (make_submission.main, ["--source", "stack"], ["--source", "stack"]),
}
OUTPUTS_OF = {
    "solution.train": ["{runs}/tiny_effnet/fold0/oof.parquet", "{runs}/tiny_effnet/fold0/test.parquet"],
    "solution.stack": ["oof/stack/oof.parquet", "oof/stack/test.parquet", "oof/stack/manifest.json"],
    "solution.make_submission": ["submissions/stack.csv", "submissions/stack.json"],
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, renames",
    [("solution.train", [2, 5]), ("solution.stack", [1, 2]), ("solution.make_submission", [1, 2])],
)
def test_killed_anywhere_and_rerun_gives_the_uninterrupted_outputs(trained, module, renames):
    main, args, whole_args = STAGES[module]
    if module == "solution.make_submission":
        stack.main([])
    main(whole_args)  # the uninterrupted run
    expected = {o: (trained / o.format(runs="whole")).read_bytes() for o in OUTPUTS_OF[module]}
    assert killed_at(renames, module, args, trained) == [signal.SIGKILL] * len(renames)
    main(args)
    rerun = {o: (trained / o.format(runs="again")).read_bytes() for o in OUTPUTS_OF[module]}
    assert rerun == expected
