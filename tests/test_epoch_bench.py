"""``python -m solution.bench epoch``: a fold of each recipe profiled in both layouts (a whole run at a tiny size:
part of .ci/run's whole-runs step, not of scripts/test.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from solution import bench
from solution.benchmarks import epoch

TINY_RECIPE = "backbone: test_resnet\nchannels: rgby\nimage_size: 32\nbatch_size: 16\nepochs: 2\nnum_workers: 0\n"


@pytest.mark.slow
def test_the_epoch_bench_splits_a_fold_into_its_parts(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE + "augment: flips\ntta: flip\n")
    monkeypatch.setattr(epoch, "DEMO_CONFIGS", tmp_path)
    monkeypatch.setattr(epoch, "DEMO_DATA", {"n_train": 40, "n_test": 12, "size": 32})
    monkeypatch.setattr(epoch, "EPOCHS", 2)
    monkeypatch.chdir(tmp_path)
    bench.main(["epoch"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # its caches went with its folder
    figures = {k: float(v) for k, v in re.findall(r"^(\w+)=(\S+)$", capsys.readouterr().out, re.MULTILINE)}
    parts = ["batch_transform", "checkpoints", "cutoffs", "logs", "model", "optimizer", "validation"]
    assert {f"epoch_tiny_{p}_seconds" for p in parts} | {"fold_tiny_cache_seconds", "fold_tiny_tta_seconds"} <= set(
        figures
    )
    assert all(value >= 0 for value in figures.values())
    per_epoch = sum(figures[f"epoch_tiny_{p}_seconds"] for p in ("model", "optimizer", "batch_transform"))
    assert per_epoch == pytest.approx(figures["epoch_tiny_seconds"], rel=0.5)  # the profile's split of an epoch
    assert figures["epoch_tiny_channels_last_speedup"] > 0 and figures["process_start_seconds"] > 0
    assert figures["process_start_speedup"] == pytest.approx(
        figures["process_start_collector_on_seconds"] / figures["process_start_seconds"], rel=1e-3
    )
