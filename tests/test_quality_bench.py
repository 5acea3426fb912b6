"""``python -m solution.bench quality``: the kit's commands, end to end, on the quality dataset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from solution import bench
from solution.benchmarks import quality
from solution.core.errors import ConfigError

TINY_RECIPE = (
    "backbone: test_resnet\nchannels: rgby\nimage_size: 32\nbatch_size: 16\nepochs: 1\n"
    "lr: 0.003\naugment: flips\ntta: flip\nnum_workers: 0\n"
)
TINY_DATA = quality.QualityData(n_train=60, n_test=20, size=32, seed=5, density=1.3, brightness=0.8, label_noise=0.05)


@pytest.mark.slow
def test_quality_bench_runs_the_pipeline_and_prints_the_three_figures(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny_resnet.yaml").write_text(TINY_RECIPE)
    monkeypatch.setattr(quality, "QUALITY", TINY_DATA)
    bench.main(["quality", "--configs", str(tmp_path / "recipes")])
    out = capsys.readouterr().out
    assert "recipes: tiny_resnet" in out and "--label-noise=0.05" in out
    figures = dict(re.findall(r"^(quality_\w+)=(\S+)$", out, re.MULTILINE))
    assert set(figures) == {"quality_test_macro_f1", "quality_nested_macro_f1", "quality_seconds"}
    assert 0 <= float(figures["quality_test_macro_f1"]) <= 1 and 0 <= float(figures["quality_nested_macro_f1"]) <= 1
    assert float(figures["quality_seconds"]) > 0


def test_a_folder_without_recipes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no \\*.yaml recipes"):
        quality.recipes(tmp_path)


def test_configs_is_refused_for_the_other_stages(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main(["stack", "--configs", str(tmp_path)])


def test_a_failing_step_names_its_command_and_output(tmp_path: Path) -> None:
    with pytest.raises(quality.StepFailed, match="(?s)exited with status 3.*went wrong"):
        quality.run_step(["bash", "-c", "echo went wrong; exit 3"], tmp_path, tmp_path / "log")
