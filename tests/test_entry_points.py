"""Every ``python -m`` entry point meets a bad input with a one-line error, never a traceback.

One subprocess runs each entry point in turn as ``__main__`` (as ``python -m`` does,
through ``runpy``), so the heavy imports are paid once; any exception that escapes
an entry point is printed with its traceback and fails the test.
"""

import subprocess
import sys

import pytest

DRIVER = """
import gc, runpy, sys, traceback
gc.disable()  # the entry points' imports without the collector, as in a command's start (solution.core.startup)
for module, *args in CASES:
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        print(f"@@ {module} exit {exc.code}", file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        print(f"@@ {module} crashed", file=sys.stderr)
    else:
        print(f"@@ {module} exit 0", file=sys.stderr)
"""


def run_cases(cases, cwd):
    code = f"CASES = {cases!r}\n{DRIVER}"
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)
    return result.stderr


@pytest.mark.slow
def test_bad_inputs_exit_cleanly(tmp_path, tiny_dataset):
    (tmp_path / "exists").mkdir()
    (tmp_path / "typo.yaml").write_text("backbone: test_resnet\nepoch: 3\n")
    cases = [
        ("solution.synthetic", "exists"),
        ("solution.folds", "--data", "no_such_dir"),
        ("solution.folds", "--data", str(tiny_dataset), "--n-folds", "100"),
        ("solution.train", "--config", "typo.yaml"),
        ("solution.train", "--config", "missing.yaml"),
        ("solution.predict", "--config", "typo.yaml"),
        ("solution.stack",),
        ("solution.thresholds",),
        ("solution.make_submission",),
        ("solution.make_submission", "--out", "sub.json"),
        ("solution.report",),
        ("solution.duplicates", "--data", "no_such_dir"),
        ("solution.external", "--csv", "missing.csv", "--out", "ext"),
    ]
    err = run_cases(cases, tmp_path)
    assert "Traceback" not in err, err
    outcomes = [line for line in err.splitlines() if line.startswith("@@ ")]
    assert len(outcomes) == len(cases), err
    for (module, *_), outcome in zip(cases, outcomes):
        assert outcome.startswith(f"@@ {module} exit error: "), (outcome, err)
    assert "already exists; pass --force" in err and "cannot make 100 folds from 40 images" in err
    assert "unknown key(s) 'epoch'" in err and "config file not found: missing.yaml" in err
    assert "no folds in folds/" in err
