"""The training engine on CPU at a tiny size: resume, best epoch, early stopping, logs, pretrained stems."""

import csv
import os
import sys

import numpy as np
import pytest
import timm
import torch

from solution import predict, train
from solution.artifacts.folds import read_folds
from solution.core.errors import ConfigError
from solution.core.fileio import exclusive, read_json
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.training import loop
from solution.training.config import build_config, load_config
from solution.training.distributed import Context
from solution.training.experiment import fold_run
from solution.training.models import build_model

ENGINE = (
    "backbone: test_resnet\nchannels: rgby\nimage_size: 32\nbatch_size: 8\naccumulate: 2\nepochs: 3\n"
    "warmup_epochs: 1\nlr: 0.01\naugment: light\nema: 0.9\nclip_grad: 1.0\ndrop_rate: 0.2\ntta: flip\nnum_workers: 0\n"
)


@pytest.fixture
def engine_cfg(trained):
    (trained / "configs" / "engine.yaml").write_text(ENGINE)
    return ["--config", "configs/engine.yaml", "--fold", "0"]


def weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def train_killed_after_epoch_1(args: list[str], monkeypatch) -> None:
    original = loop._end_of_epoch

    def killed_after_epoch_1(*a):
        original(*a)
        if a[3].epoch == 1:  # (cfg, run, engine, progress, ...)
            raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "_end_of_epoch", killed_after_epoch_1)
        train.main(args)


@pytest.mark.parametrize("workers", ["0", "2"])  # 2: persistent loader workers, reseeded every epoch
def test_killed_after_an_epoch_and_resumed_ends_as_an_uninterrupted_run(trained, engine_cfg, monkeypatch, workers):
    engine_cfg = [*engine_cfg, "--num-workers", workers]
    train.main([*engine_cfg, "--runs-dir", "whole"])
    train_killed_after_epoch_1([*engine_cfg, "--runs-dir", "killed"], monkeypatch)
    run = trained / "killed" / "engine" / "fold0"
    assert fold_run(trained / "killed", *_identity(trained), 0).load_state(run / "last.pt")["progress"]["epoch"] == 1
    train.main([*engine_cfg, "--runs-dir", "killed"])

    whole, resumed = weights(trained / "whole" / "engine" / "fold0"), weights(run)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_the_winners_options_train_resume_exactly_and_predict_on_windows(trained, monkeypatch):
    """A head of their own, each image normalised by itself, random crops (drawn on the device): a killed run
    resumes exactly; the fold predicts on 5 windows x the flip, merged by their max, and records it."""
    (trained / "configs" / "options.yaml").write_text(ENGINE + "head: avgmax\nnormalize: image\ncrop: 24\n")
    args = ["--config", "configs/options.yaml", "--fold", "0", "--epochs", "2"]
    args += ["--tta-crops", "5", "--tta-merge", "max"]
    train.main([*args, "--runs-dir", "whole"])
    train_killed_after_epoch_1([*args, "--runs-dir", "killed"], monkeypatch)
    train.main([*args, "--runs-dir", "killed"])
    run = trained / "killed" / "options" / "fold0"
    whole, resumed = weights(trained / "whole" / "options" / "fold0"), weights(run)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert read_json(run / "predictions.json")["tta"] == "flip, 5 crops, max"
    cfg = load_config(trained / "configs" / "options.yaml", {"epochs": 2})  # tta_crops 1: the same trained run
    one_window = fold_run(trained / "killed", cfg, read_folds(trained / "folds"), 0)
    test_files = read_json(run / "predictions.json")["test_files"]  # the same test files: only the TTA differs
    assert one_window.trained_metrics() is not None and not one_window.predictions_current(test_files)


def test_resuming_with_other_torch_threads_says_the_numbers_will_differ(trained, engine_cfg, monkeypatch, capsys):
    train_killed_after_epoch_1([*engine_cfg, "--runs-dir", "killed"], monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        capsys.readouterr()
        train.main([*engine_cfg, "--runs-dir", "killed"])
    finally:
        torch.set_num_threads(threads)
    assert f"resuming with {threads + 1} torch threads where the run had {threads}" in capsys.readouterr().out


def _identity(trained):
    return load_config(trained / "configs" / "engine.yaml"), read_folds(trained / "folds")


def test_logs_best_epoch_and_early_stopping(trained, engine_cfg, monkeypatch):
    scores = iter([0.3, 0.5, 0.4, 0.2, 0.1])
    original = loop.validate

    def scripted(*args):
        return {**original(*args), "val_macro_f1_fitted": next(scores)}

    monkeypatch.setattr(loop, "validate", scripted)
    train.main([*engine_cfg, "--epochs", "5", "--patience", "2", "--runs-dir", "es"])
    run = trained / "es" / "engine" / "fold0"
    with (run / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2: stop
    assert {"train_loss", "val_loss", "lr", "images_per_s", "val_macro_f1_fitted"} <= set(rows[0])
    metrics = read_json(run / "metrics.json")
    assert metrics["best_epoch"] == 2 and metrics["epochs_run"] == 4 and metrics["val_macro_f1_fitted"] == 0.5
    assert metrics["precision"] == "fp32"  # precision: auto, on the CPU
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert any((run / "tb").iterdir()) and not (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_select_val_loss_keeps_the_epoch_of_the_lowest_validation_loss(trained, engine_cfg, monkeypatch):
    losses, f1s = iter([0.9, 0.4, 0.6]), iter([0.1, 0.2, 0.3])  # macro_f1 would keep epoch 3
    original = loop.validate

    def scripted(*args):
        return {**original(*args), "val_loss": next(losses), "val_macro_f1_fitted": next(f1s)}

    monkeypatch.setattr(loop, "validate", scripted)
    train.main([*engine_cfg, "--select", "val_loss", "--runs-dir", "sel"])
    metrics = read_json(trained / "sel" / "engine" / "fold0" / "metrics.json")
    assert metrics["best_epoch"] == 2 and metrics["kept"] == "epoch 2" and metrics["val_loss"] == 0.4


def test_swa_keeps_the_mean_of_the_last_epochs_weights_with_recomputed_batchnorm(trained, engine_cfg, monkeypatch):
    seen = []
    original = loop._end_of_epoch

    def recording(*a):
        original(*a)
        seen.append({k: v.clone() for k, v in a[2].eval_model.state_dict().items()})

    monkeypatch.setattr(loop, "_end_of_epoch", recording)
    train.main([*engine_cfg, "--epochs", "4", "--swa", "2", "--runs-dir", "swa"])
    run = trained / "swa" / "engine" / "fold0"
    kept = weights(run)
    params = dict(build_model(load_config(trained / "configs" / "engine.yaml"), weights=False).named_parameters())
    for key in params:  # the EMA's weights after epochs 3 and 4, averaged
        torch.testing.assert_close(kept[key], (seen[2][key] + seen[3][key]) / 2)
    means = [k for k in kept if k.endswith("running_mean")]
    assert means and all(not torch.equal(kept[k], epoch[k]) for k in means for epoch in seen)
    metrics = read_json(run / "metrics.json")
    assert metrics["kept"] == "average of epochs 3-4" and 0 <= metrics["val_macro_f1_fitted"] <= 1


def test_swa_killed_after_an_epoch_and_resumed_ends_as_an_uninterrupted_run(trained, engine_cfg, monkeypatch):
    swa = [*engine_cfg, "--epochs", "2", "--swa", "2"]
    train.main([*swa, "--runs-dir", "whole_swa"])
    train_killed_after_epoch_1([*swa, "--runs-dir", "killed_swa"], monkeypatch)
    train.main([*swa, "--runs-dir", "killed_swa"])
    whole, resumed = (weights(trained / d / "engine" / "fold0") for d in ("whole_swa", "killed_swa"))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)


def test_pretrained_file_adapts_the_stem_instead_of_a_random_one(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=28)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    stem_key = source.pretrained_cfg["first_conv"] + ".weight"
    weights_file = str(tmp_path / "weights.pth")
    cfg = build_config(
        {"name": "p", "backbone": "test_resnet", "channels": "rgby", "pretrained_file": weights_file}, "t"
    )
    model = build_model(cfg).state_dict()
    assert model[stem_key].shape[1] == 4
    # the stem is timm's own adaptation of the saved RGB stem; the body is the saved weights (timm swaps the
    # classifier for a fresh one, as the pretrained config's class count differs)
    torch.testing.assert_close(model[stem_key], timm.models.adapt_input_conv(4, source.state_dict()[stem_key]))
    head = source.pretrained_cfg["classifier"]
    body = {k: v for k, v in source.state_dict().items() if k != stem_key and not k.startswith(head)}
    assert body and all(torch.equal(model[k], v) for k, v in body.items())
    fresh = build_model(build_config({"name": "p", "backbone": "test_resnet", "channels": "rgby"}, "t")).state_dict()
    assert not torch.allclose(fresh[stem_key], model[stem_key])


def test_missing_pretrained_file_is_a_clean_error():
    cfg = build_config({"name": "p", "backbone": "test_resnet", "pretrained_file": "nowhere.pth"}, "test")
    with pytest.raises(ConfigError, match="pretrained_file: no such file 'nowhere.pth'"):
        build_model(cfg)


def test_a_fold_in_training_is_locked(trained, engine_cfg):
    run = trained / "locked" / "engine" / "fold0"
    with exclusive(run / "rank0.lock", "held by the test"):
        with pytest.raises(SystemExit, match=f"fold 0 of engine .* is in use by process {os.getpid()}"):
            train.main([*engine_cfg, "--runs-dir", "locked"])


def test_oversampling_draws_the_fold_training_images_by_their_weights(trained, engine_cfg, monkeypatch):
    calls = []
    original = loop.oversampling_sampler
    monkeypatch.setattr(loop, "oversampling_sampler", lambda *a: calls.append(a) or original(*a))
    train.main([*engine_cfg, "--epochs", "1", "--oversample", "1", "--runs-dir", "over"])
    labels, factor, _, draws = calls[0]
    n_train = int((read_folds("folds").fold != 0).sum())
    assert len(labels) == draws == n_train and factor == 1.0
    assert read_json(trained / "over" / "engine" / "fold0" / "metrics.json")["epochs_run"] == 1


def test_a_run_resumes_finishes_and_predicts_without_its_pretrained_file(trained, monkeypatch, tmp_path):
    """Only a fresh start reads the pretrained weights: resuming, the end of a fold and predict load a saved state
    into a model built without them (offline, ImageNet weights would be a download)."""
    weights_file = tmp_path / "weights.pth"
    torch.save(timm.create_model("test_resnet", num_classes=28).state_dict(), weights_file)
    (trained / "configs" / "pre.yaml").write_text(
        f"backbone: test_resnet\nimage_size: 32\nbatch_size: 8\nepochs: 2\naugment: flips\ntta: none\n"
        f"num_workers: 0\npretrained_file: {weights_file}\n"
    )
    args = ["--config", "configs/pre.yaml", "--runs-dir", "pre"]
    train.main([*args, "--fold", "1", "2", "3", "4"])
    train_killed_after_epoch_1([*args, "--fold", "0"], monkeypatch)
    weights_file.unlink()
    train.main([*args, "--fold", "0"])
    assert read_json(trained / "pre" / "pre" / "fold0" / "metrics.json")["epochs_run"] == 2
    predict.main([*args, "--redo"])
    assert (trained / "oof" / "pre" / "oof.parquet").is_file()


def test_a_state_saved_with_more_gpus_resumes_on_fewer(monkeypatch, caplog):
    """torch's set_rng_state_all raises IndexError on a state of more devices than it sees: only the devices both
    processes see are restored, and the difference is warned of."""
    state, restored = loop.rng_state(), []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    saved = [torch.full((16,), 1, dtype=torch.uint8), torch.full((16,), 2, dtype=torch.uint8)]
    loop.set_rng_state({**state, "cuda": saved})
    assert len(restored) == 1 and restored[0][1] == 0 and torch.equal(restored[0][0], saved[0])
    assert "resuming with 1 GPU(s) visible where the run saved the random states of 2" in caplog.text


SYNCING = ("item", "tolist", "nonzero", "__bool__", "cpu", "numpy")  # Tensor methods that wait for the device


def kit_syncs(monkeypatch) -> list[str]:
    """The list that collects every call, from the kit's own code, of a Tensor method that waits for the device
    (or of ``torch.nonzero``, or a ``.to`` without ``non_blocking=True``); torch's internals are not counted."""
    calls: list[str] = []

    def counting(owner, name, blocking=lambda *a, **kw: True):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("solution.") and blocking(*args, **kwargs):
                calls.append(f"{name} in {caller}")
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in SYNCING:
        counting(torch.Tensor, name)
    counting(torch, "nonzero")
    counting(torch.Tensor, "to", blocking=lambda *a, non_blocking=False, **kw: not non_blocking)
    return calls


@pytest.mark.parametrize("options", [{}, {"crop": 12, "normalize": "image", "head": "attention"}])
def test_a_training_step_never_waits_for_the_device_and_the_epoch_loss_is_the_steps_mean(monkeypatch, options):
    cfg = build_config(
        {"name": "s", "backbone": "test_resnet", "image_size": 16, "batch_size": 4, "accumulate": 2, "ema": 0.9}
        | {"clip_grad": 1.0, "augment": "flips", "num_workers": 0, **options},
        "test",
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (16, 16, 16, 4), dtype=np.uint8)
    labels = (rng.random((16, 28)) < 0.3).astype(np.uint8)
    loader = make_loader(images, np.arange(16), 4, 0, labels=labels, shuffle=True)
    engine = loop.build_engine(cfg, StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900), len(loader), Context())
    losses, loss_fn = [], engine.loss_fn
    engine.loss_fn = lambda logits, y: losses.append(loss_fn(logits, y)) or losses[-1]
    calls = kit_syncs(monkeypatch)
    mean = loop.train_one_epoch(cfg, engine, loader, Context(), 0, "syncs")
    assert calls == ["item in solution.training.distributed"]  # the epoch's one reading of the summed loss
    assert len(losses) == 4 and mean == sum(loss.item() * 4 for loss in losses) / 16


def test_a_fold_on_a_gpu_records_its_peak_gpu_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**29)
    assert loop._process(torch.device("cuda", 0))["peak_gpu_memory_gib"] == 1.5
    assert "peak_gpu_memory_gib" not in loop._process(torch.device("cpu"))


def _epochs_of(cfg_values: dict, batches: int, epochs: int, monkeypatch) -> tuple[list[int], dict]:
    """The update counts ``_update`` is called with over ``epochs`` epochs of ``batches`` batches of 4, and the
    weights they end with."""
    cfg = build_config({"name": "a", "backbone": "test_resnet", "image_size": 16, "batch_size": 4} | cfg_values, "t")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4 * batches, 16, 16, 4), dtype=np.uint8)
    labels = (rng.random((4 * batches, 28)) < 0.3).astype(np.uint8)
    loader = make_loader(images, np.arange(4 * batches), 4, 0, labels=labels)
    torch.manual_seed(0)
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 4900)
    engine = loop.build_engine(cfg, stats, loop.updates_per_epoch(len(loader), cfg.accumulate), Context())
    updates, real = [], loop._update
    monkeypatch.setattr(loop, "_update", lambda cfg, engine, n: updates.append(n) or real(cfg, engine, n))
    for epoch in range(epochs):
        loop.train_one_epoch(cfg, engine, loader, Context(), epoch, "accumulate")
    return updates, engine.model.state_dict()


def test_an_epoch_shorter_than_accumulate_steps_once_on_the_mean_of_its_batches(monkeypatch):
    """``accumulate: 8`` over 2 batches never stepped (lr 0.001 and 0.5 gave bit-identical weights): the last batch
    of an epoch ends a partial update, the mean over its micro-batches, as ``accumulate: 2`` steps."""
    updates, partial = _epochs_of({"accumulate": 8}, 2, 2, monkeypatch)
    assert updates == [1, 2]  # one update an epoch, counted as the schedule's updates_per_epoch counts them
    _, whole = _epochs_of({"accumulate": 2}, 2, 2, monkeypatch)
    assert all(torch.equal(partial[key], whole[key]) for key in whole)
    _, other_lr = _epochs_of({"accumulate": 8, "lr": 0.5}, 2, 2, monkeypatch)
    assert not all(torch.equal(partial[key], other_lr[key]) for key in whole)


def test_an_epoch_ending_in_a_partial_accumulation_counts_it(monkeypatch):
    assert _epochs_of({"accumulate": 2}, 3, 2, monkeypatch)[0] == [1, 2, 3, 4]  # 2 updates an epoch, the 2nd of 1
    assert loop.updates_per_epoch(3, 2) == 2 and loop.updates_per_epoch(2, 8) == 1 and loop.updates_per_epoch(4, 2) == 2


def test_a_diverging_run_stops_naming_the_epoch_the_fold_and_lr(trained, engine_cfg):
    """--lr 1e12: the epoch's steps leave weights whose loss is infinite or NaN, in training or in validation (it
    ended in a traceback of validation's "probabilities must lie in [0, 1]")."""
    became = "error: the (training|validation) loss became (nan|inf) at epoch 1 of fold 0 of engine"
    match = rf"{became}: training diverged; lower lr \(now 1e\+12\) or set clip_grad \(now 1\)"
    with pytest.raises(SystemExit, match=match):
        train.main([*engine_cfg, "--lr", "1e12", "--runs-dir", "nan"])


def test_a_nan_training_loss_stops_the_run_at_its_epochs_end(trained, engine_cfg, monkeypatch):
    real = loop.train_one_epoch

    def diverged(cfg, engine, *args):
        with torch.no_grad():
            for parameter in engine.model.parameters():
                parameter.fill_(float("nan"))
        return real(cfg, engine, *args)

    monkeypatch.setattr(loop, "train_one_epoch", diverged)
    with pytest.raises(SystemExit, match=r"the training loss became nan at epoch 1 of fold 0 of engine.*lower lr"):
        train.main([*engine_cfg, "--runs-dir", "nan"])
