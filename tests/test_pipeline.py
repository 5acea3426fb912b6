"""The whole pipeline at a tiny size: folds -> train (2 experiments) -> predict -> stack -> submission.

The two experiments are trained once per session (``trained_master``); each test works on its own copy.
"""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CONFIGS

from solution import folds, make_submission, predict, stack, thresholds, train
from solution.artifacts.folds import open_matching_dataset, read_folds
from solution.artifacts.runs import assemble
from solution.core.errors import ArtifactError
from solution.data import cache
from solution.scoring.thresholds import RULES
from solution.training import experiment, loop
from solution.training.config import load_config
from solution.training.experiment import fold_run


def test_end_to_end(trained, tiny_dataset_master, capsys):
    ids = read_folds("folds").ids
    for name in TINY_CONFIGS:
        oof = pd.read_parquet(trained / "oof" / name / "oof.parquet")
        test = pd.read_parquet(trained / "oof" / name / "test.parquet")
        assert oof["Id"].tolist() == ids and list(oof.columns) == ["Id"] + [f"p{i}" for i in range(28)]
        assert oof["p0"].dtype == np.float32 and len(test) == 12
        manifest = json.loads((trained / "oof" / name / "manifest.json").read_text())
        assert manifest["folds_hash"] == read_folds("folds").hash and len(manifest["fold_metrics"]) == 5
        assert {"config", "tta"} <= set(manifest["settings"]) and {"packages", "git_commit"} <= set(
            manifest["provenance"]
        )

    capsys.readouterr()
    stack.main([])
    out = capsys.readouterr().out
    assert "mean of experiments" in out and "LightGBM stack" in out and "stack written (0.5 LightGBM)" in out
    assert len(pd.read_parquet(trained / "oof" / "stack" / "oof.parquet")) == 40

    # --blend 0 writes the plain mean of the experiments
    stack.main(["--blend", "0"])
    mean = np.mean(
        [pd.read_parquet(trained / "oof" / n / "oof.parquet").iloc[:, 1:].to_numpy() for n in TINY_CONFIGS], axis=0
    )
    stacked = pd.read_parquet(trained / "oof" / "stack" / "oof.parquet").iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(stacked, mean, rtol=1e-6)
    with pytest.raises(SystemExit):
        stack.main(["--blend", "1.5"])

    capsys.readouterr()
    thresholds.main(["--source", "stack"])
    printed = capsys.readouterr().out
    assert printed.count("cut-off ") == 28 and "OOF macro-F1 with these cut-offs" in printed

    capsys.readouterr()
    make_submission.main([])
    (written,) = (trained / "submissions").glob("*.json")
    sidecar = json.loads(written.read_text())
    sub = pd.read_csv(written.with_suffix(".csv"), dtype=str, keep_default_na=False)
    sample = pd.read_csv(tiny_dataset_master / "sample_submission.csv", dtype=str)
    assert sub["Id"].tolist() == sample["Id"].tolist() and written.stem == sidecar["source"]
    assert len(sidecar["thresholds"]) == 28 and 0 <= sidecar["test_macro_f1"] <= 1
    candidates = {"tiny_effnet", "tiny_convnext", "mean", "rank_mean", "hill_climb", "stack"}
    assert {(r["candidate"], r["rule"]) for r in sidecar["estimates"]} == {(c, r) for c in candidates for r in RULES}
    best = max(sidecar["estimates"], key=lambda r: r["nested_macro_f1"])
    assert sidecar["nested_macro_f1"] == best["nested_macro_f1"]
    assert {"source", "rule", "oof_macro_f1", "nested_macro_f1", "mean_labels_per_test_image"} <= set(sidecar)
    printed = capsys.readouterr().out
    assert f"picked {sidecar['source']} with rule {sidecar['rule']}" in printed and "labels per image" in printed
    assert "synthetic test macro-F1" in printed


def test_finished_fold_is_skipped_and_killed_fold_resumes(trained, monkeypatch, capsys):
    args = ["--config", "configs/tiny_effnet.yaml", "--fold", "0", "--runs-dir", "fresh"]

    def killed(*a, **k):
        raise KeyboardInterrupt  # killed after the last epoch, before predictions were written

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "predict_fold", killed)
        train.main(args)
    run = trained / "fresh" / "tiny_effnet" / "fold0"
    assert (run / "last.pt").is_file() and not (run / "metrics.json").exists()

    epochs_run = []
    original = loop.train_one_epoch
    monkeypatch.setattr(loop, "train_one_epoch", lambda *a, **k: epochs_run.append(1) or original(*a, **k))
    capsys.readouterr()
    train.main(args)
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert epochs_run == [] and (run / "metrics.json").is_file() and not (run / "last.pt").exists()

    train.main(args)
    assert "already trained" in capsys.readouterr().out and epochs_run == []


def test_changed_config_does_not_reuse_a_finished_fold(trained):
    with pytest.raises(
        SystemExit, match="belongs to a run with another config or other folds: delete runs/tiny_convnext/"
    ):
        train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "1", "--lr", "0.01"])


def test_killed_fold_does_not_resume_under_another_config(trained, monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt

    args = ["--config", "configs/tiny_convnext.yaml", "--fold", "2", "--runs-dir", "fresh"]
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "predict_fold", killed)
        train.main(args)
    with pytest.raises(SystemExit, match="last.pt belongs to a run with another config"):
        train.main([*args, "--epochs", "3"])


def test_predictions_from_other_folds_are_refused(trained, tiny_dataset_master):
    folds.main(["--data", str(tiny_dataset_master), "--force", "--seed", "7"])
    with pytest.raises(SystemExit, match="made with folds .* but folds/folds.json is"):
        stack.main([])


def test_unknown_source_lists_available(trained):
    available = "tiny_convnext, tiny_effnet, mean, rank_mean, hill_climb"
    with pytest.raises(SystemExit, match=f"no candidate named 'nope'; available: {available}"):
        make_submission.main(["--source", "nope"])
    make_submission.main(["--source", "tiny_effnet", "--rule", "prior"])
    sidecar = json.loads((trained / "submissions" / "tiny_effnet.json").read_text())
    assert (sidecar["source"], sidecar["rule"]) == ("tiny_effnet", "prior") and "as told by" in sidecar["why"]


def test_config_typo_exits_with_the_key(trained):
    (trained / "configs" / "typo.yaml").write_text("backbone: test_resnet\nepoch: 3\n")
    with pytest.raises(SystemExit, match="unknown key\\(s\\) 'epoch'; valid keys: name, backbone"):
        train.main(["--config", "configs/typo.yaml"])


def test_predict_again_with_another_tta(trained):
    run = trained / "runs" / "tiny_effnet"
    before = pd.read_parquet(trained / "oof" / "tiny_effnet" / "oof.parquet")
    folds_ = read_folds("folds")
    cfg = load_config("configs/tiny_effnet.yaml", {"tta": "none"})
    with pytest.raises(ArtifactError, match="holds no predictions of this config with tta none"):
        runs = [fold_run(trained / "runs", cfg, folds_, k) for k in range(folds_.n_folds)]
        assemble(runs, cfg.to_dict(), open_matching_dataset(folds_), folds_, trained / "oof", "")
    predict.main(["--config", "configs/tiny_effnet.yaml", "--tta", "none"])
    manifest = json.loads((trained / "oof" / "tiny_effnet" / "manifest.json").read_text())
    assert manifest["settings"]["tta"] == "none"
    assert json.loads((run / "fold0" / "predictions.json").read_text())["tta"] == "none"
    after = pd.read_parquet(trained / "oof" / "tiny_effnet" / "oof.parquet")
    assert not np.allclose(before.iloc[:, 1:].to_numpy(), after.iloc[:, 1:].to_numpy())


def test_training_a_fold_and_predicting_every_fold_name_each_cache_once(trained, monkeypatch):
    """Naming a cache stats every source file (minutes for 100,000 images on a network disk): a fold's
    training does it once per split, and predict once per split for all folds."""
    named = []
    real = cache.make_plan
    for caller in (cache, experiment, loop):  # the modules that name a cache
        monkeypatch.setattr(
            caller, "make_plan", lambda ds, split, *a, **k: named.append(split) or real(ds, split, *a, **k)
        )
    train.main(["--config", "configs/tiny_convnext.yaml", "--fold", "1", "--runs-dir", "fresh"])
    assert sorted(named) == ["test", "train"]
    named.clear()
    predict.main(["--config", "configs/tiny_convnext.yaml", "--redo"])
    assert sorted(named) == ["test", "train"]
