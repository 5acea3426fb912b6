"""The whole pipeline at a tiny size: folds -> train (2 experiments) -> predict -> stack -> submission."""

import json

import numpy as np
import pandas as pd
import pytest

from solution import folds, make_submission, predict, stack, thresholds, train
from solution.artifacts import open_matching_dataset, read_folds
from solution.config import load_config
from solution.errors import ArtifactError

CONFIGS = {
    "tiny_effnet": "backbone: test_efficientnet\nchannels: rgby\nimage_size: 32\nbatch_size: 16\nepochs: 2\nlr: 0.003\naugment: light\ntta: d4\nnum_workers: 0\n",
    "tiny_convnext": "backbone: test_convnext\nchannels: ry_gy_b\nimage_size: 32\nbatch_size: 16\nepochs: 1\nlr: 0.003\naugment: flips\ntta: flip\nnum_workers: 0\n",
}


@pytest.fixture
def workdir(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    for name, text in CONFIGS.items():
        (tmp_path / "configs" / f"{name}.yaml").write_text(text)
    folds.main(["--data", str(tiny_dataset)])
    return tmp_path


def run_experiments(workdir):
    for name in CONFIGS:
        train.main(["--config", f"configs/{name}.yaml"])
        predict.main(["--config", f"configs/{name}.yaml"])


def test_end_to_end(workdir, tiny_dataset, capsys):
    run_experiments(workdir)
    ids = read_folds("folds").ids
    for name in CONFIGS:
        oof = pd.read_parquet(workdir / "oof" / name / "oof.parquet")
        test = pd.read_parquet(workdir / "oof" / name / "test.parquet")
        assert oof["Id"].tolist() == ids and list(oof.columns) == ["Id"] + [f"p{i}" for i in range(28)]
        assert oof["p0"].dtype == np.float32 and len(test) == 12
        manifest = json.loads((workdir / "oof" / name / "manifest.json").read_text())
        assert manifest["folds_hash"] == read_folds("folds").hash and len(manifest["fold_metrics"]) == 5
        assert {"config", "tta", "packages", "git_commit"} <= set(manifest)

    stack.main([])
    out = capsys.readouterr().out
    assert "mean of experiments" in out and "LightGBM stack" in out and "stack written (0.5 LightGBM)" in out
    assert len(pd.read_parquet(workdir / "oof" / "stack" / "oof.parquet")) == 40

    # --blend 0 writes the plain mean of the experiments
    stack.main(["--blend", "0"])
    mean = np.mean([pd.read_parquet(workdir / "oof" / n / "oof.parquet").iloc[:, 1:].to_numpy() for n in CONFIGS], axis=0)
    np.testing.assert_allclose(pd.read_parquet(workdir / "oof" / "stack" / "oof.parquet").iloc[:, 1:].to_numpy(), mean, rtol=1e-6)
    with pytest.raises(SystemExit):
        stack.main(["--blend", "1.5"])

    capsys.readouterr()
    thresholds.main(["--source", "stack"])
    printed = capsys.readouterr().out
    assert printed.count("cut-off ") == 28 and "OOF macro-F1 with these cut-offs" in printed

    make_submission.main([])
    sub = pd.read_csv(workdir / "submissions" / "stack.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(tiny_dataset / "sample_submission.csv", dtype=str)
    assert sub["Id"].tolist() == sample["Id"].tolist()
    sidecar = json.loads((workdir / "submissions" / "stack.json").read_text())
    assert len(sidecar["thresholds"]) == 28 and 0 <= sidecar["test_macro_f1"] <= 1
    assert "synthetic test macro-F1" in capsys.readouterr().out


def test_finished_fold_is_skipped_and_killed_fold_resumes(workdir, monkeypatch, capsys):
    args = ["--config", "configs/tiny_effnet.yaml", "--fold", "0"]

    def killed(*a, **k):
        raise KeyboardInterrupt  # killed after the last epoch, before predictions were written

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(train, "predict_fold", killed)
        train.main(args)
    run = workdir / "runs" / "tiny_effnet" / "fold0"
    assert (run / "last.pt").is_file() and not (run / "metrics.json").exists()

    epochs_run = []
    original = train.train_one_epoch
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: epochs_run.append(1) or original(*a, **k))
    train.main(args)
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert epochs_run == [] and (run / "metrics.json").is_file() and not (run / "last.pt").exists()

    train.main(args)
    assert "already trained" in capsys.readouterr().out and epochs_run == []


def test_changed_config_does_not_reuse_a_finished_fold(workdir):
    train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "1"])
    with pytest.raises(SystemExit, match="belongs to a run with another config or other folds: delete runs/tiny_convnext/"):
        train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "1", "--lr", "0.01"])


def test_killed_fold_does_not_resume_under_another_config(workdir, monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(train, "predict_fold", killed)
        train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "2"])
    with pytest.raises(SystemExit, match="last.pt belongs to a run with another config"):
        train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "2", "--epochs", "3"])


def test_predictions_from_other_folds_are_refused(workdir, tiny_dataset):
    run_experiments(workdir)
    folds.main(["--data", str(tiny_dataset), "--force", "--seed", "7"])
    with pytest.raises(SystemExit, match="made with folds .* but folds/folds.json is"):
        stack.main([])


def test_unknown_source_lists_available(workdir):
    run_experiments(workdir)
    with pytest.raises(SystemExit, match="no predictions named 'nope' in oof/; available: tiny_convnext, tiny_effnet"):
        make_submission.main(["--source", "nope"])
    with pytest.raises(SystemExit, match="no stack in oof/"):
        make_submission.main([])
    make_submission.main(["--source", "tiny_effnet"])
    assert (workdir / "submissions" / "tiny_effnet.csv").is_file()


def test_config_typo_exits_with_the_key(workdir):
    (workdir / "configs" / "typo.yaml").write_text("backbone: test_resnet\nepoch: 3\n")
    with pytest.raises(SystemExit, match="unknown key\\(s\\) 'epoch'; valid keys: name, backbone"):
        train.main(["--config", "configs/typo.yaml"])


def test_predict_again_with_another_tta(workdir):
    run_experiments(workdir)
    run = workdir / "runs" / "tiny_effnet"
    before = pd.read_parquet(workdir / "oof" / "tiny_effnet" / "oof.parquet")
    folds_ = read_folds("folds")
    cfg = load_config("configs/tiny_effnet.yaml", {"tta": "none"})
    with pytest.raises(ArtifactError, match="holds no predictions of this config with tta none"):
        predict.assemble(cfg, open_matching_dataset(folds_), folds_, workdir / "runs", workdir / "oof")
    predict.main(["--config", "configs/tiny_effnet.yaml", "--tta", "none"])
    manifest = json.loads((workdir / "oof" / "tiny_effnet" / "manifest.json").read_text())
    assert manifest["tta"] == "none"
    assert json.loads((run / "fold0" / "predictions.json").read_text())["tta"] == "none"
    after = pd.read_parquet(workdir / "oof" / "tiny_effnet" / "oof.parquet")
    assert not np.allclose(before.iloc[:, 1:].to_numpy(), after.iloc[:, 1:].to_numpy())
