"""A command's start (``solution.core.startup``): its imports run without the cyclic garbage collector, which resumes,
with everything imported frozen, once its ``main`` enters ``user_errors``; nothing changes elsewhere."""

import gc
import os
import subprocess
import sys

import pytest

from solution.core import startup
from solution.core.cli import user_errors


@pytest.mark.parametrize(
    "orig_argv, argv0, expected",
    [
        (["python", "-m", "solution.train", "--config", "c.yaml"], "-m", "solution.train"),
        (["python", "-u", "-X", "importtime", "-m", "solution.stack"], "-m", "solution.stack"),
        (["python", "-m", "solution.train"], "/work/solution/train.py", None),  # located: running now
        (["python", "-c", "import solution"], "-c", None),
        (["python", "script.py", "-m"], "-m", None),  # a script's own argument
    ],
)
def test_started_module_is_the_module_python_is_locating(orig_argv, argv0, expected):
    assert startup.started_module(orig_argv, argv0) == expected


@pytest.fixture
def collector():
    """The collector's state put back after the test: on, and nothing the test froze left frozen."""
    yield
    gc.unfreeze()
    gc.enable()
    startup._paused = False


@pytest.mark.parametrize("module, paused", [("solution.train", True), ("mypackage.cli", False)])
def test_only_a_kit_command_pauses_and_user_errors_resumes_it(monkeypatch, collector, module, paused):
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", module])
    monkeypatch.setattr(sys, "argv", ["-m"])
    frozen = gc.get_freeze_count()
    startup.pause_for_imports()
    assert gc.isenabled() is not paused
    with user_errors():
        assert gc.isenabled()
    assert (gc.get_freeze_count() > frozen) is paused


def test_a_collector_turned_off_by_the_user_stays_off(monkeypatch, collector):
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "solution.train"])
    monkeypatch.setattr(sys, "argv", ["-m"])
    gc.disable()
    startup.pause_for_imports()
    startup.resume()
    assert not gc.isenabled()


# Loaded by ``site`` before the command: counts the full collections until the command's main enters user_errors.
WATCH = """
import atexit, gc, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "start" and info["generation"] == 2 else None)
atexit.register(lambda: print(f"@@ {len(full)} {gc.isenabled()} {gc.get_freeze_count()}", file=sys.stderr))
"""


@pytest.mark.parametrize("args, status, resumed", [(["--oof-dir", "none"], 1, True), (["--help"], 0, False)])
def test_python_m_a_command_imports_without_full_collections_and_ends_frozen(tmp_path, args, status, resumed):
    """Its work (here a clean error) runs with the collector on; ``--help`` ends before any: frozen at its exit."""
    (tmp_path / "sitecustomize.py").write_text(WATCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    cmd = [sys.executable, "-m", "solution.stack", *args]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == status, result.stderr[-2000:]
    collections, enabled, frozen = result.stderr.split("@@ ")[-1].split()
    # pandas, pyarrow and the kit imported: about 160 000 objects, frozen
    assert int(collections) == 0 and enabled == str(resumed) and int(frozen) > 100_000, result.stderr[-500:]
