"""``scripts/gpu_check.sh --dry-run``: the device check's steps at a CPU size, and its summary table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
STEPS = ("packages", "data", "bf16", "compile", "fp16", "ddp", "predict", "bench")


@pytest.mark.slow
def test_the_dry_run_passes_every_step_and_summarises_them(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "BUDGET": "800"}
    cmd = ["bash", str(SCRIPT), "--dry-run", str(tmp_path / "check")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    rows = (tmp_path / "check" / "summary.txt").read_text().splitlines()
    assert rows == result.stdout.splitlines()[-len(rows) :]  # the table ends the output
    status = {row.split()[0]: row.split()[1] for row in rows if row[:1] != " "}
    assert status == dict.fromkeys(STEPS, "ok"), rows
    text = "\n".join(rows)
    assert "2 folds, fp32, world size 1" in text and "2 folds, fp16, world size 1" in text  # bf16 is fp32 on CPU
    assert "world size 2" in text  # ddp: 2 gloo processes
    assert "per worker: none_img_s_per_worker=" in text and "strong_img_s_per_worker=" in text
    assert "host syncs per training step: n/a (no GPU)" in text and "no GPU memory (CPU)" in text
