"""Every option a config can name comes from one registry; these tests are driven by the registries.

As scikit-learn's ``test_common.py`` does, each registered value is exercised
(here: one training step and a TTA prediction), and an unknown value is a
clean error that lists the registered ones, in the config and on the command line.
"""

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from solution.core.errors import ConfigError
from solution.data.augment import train_transform
from solution.data.batch import BatchTransform
from solution.data.channels import channel_matrix
from solution.data.loader import make_loader
from solution.data.stats import StainStats
from solution.training import loop
from solution.training.config import REGISTRIES, add_override_args, build_config
from solution.training.distributed import Context, resolve_device
from solution.training.heads import build_head
from solution.training.inference import predict_probs
from solution.training.losses import get_loss
from solution.training.models import build_model
from solution.training.numerics import Numerics, resolve_numerics
from solution.training.optim import make_optimizer
from solution.training.tta import crop_windows, tta_views

REGISTERED = [(key, value) for key, registry in REGISTRIES.items() for value in registry]
TINY = {"name": "r", "backbone": "test_resnet", "image_size": 16, "batch_size": 4, "num_workers": 0, "epochs": 1}
NEEDS = {"tta_crops": {"crop": 12}}  # the other keys a key's values need (windows need a crop size)
UNREGISTERED = {"tta_crops": 3}  # a number key: an unregistered number ("nope" is not a number)
STATS = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 70.0**2)
CPU = Numerics("fp32", torch.device("cpu"), channels_last=False)


def one_step(cfg, device):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 16, 16, 4), dtype=np.uint8)
    labels = (rng.random((8, 28)) < 0.3).astype(np.uint8)
    loader = make_loader(
        images, np.arange(8), 4, 0, labels=labels, transform=train_transform(cfg.augment), shuffle=True
    )
    engine = loop.build_engine(cfg, STATS, len(loader), Context(device=device))
    before = [p.detach().clone() for p in engine.model.parameters()]
    loss = loop.train_one_epoch(cfg, engine, loader, Context(device=device), 0, "step")
    assert np.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, engine.model.parameters()))
    loader = make_loader(images, np.arange(3), 4, 0)
    whole = BatchTransform(channel_matrix(cfg.channels), STATS, normalize=cfg.normalize)  # as predict_fold's
    probs = predict_probs(engine.model, loader, cfg.tta, engine.numerics, whole, cfg.crop, cfg.tta_crops, cfg.tta_merge)
    assert probs.shape == (3, 28) and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize("key, value", REGISTERED)
def test_every_registered_value_trains_one_step(key, value):
    cfg = build_config({**TINY, **NEEDS.get(key, {}), key: value}, "test")
    if key == "device" and value == "cuda" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no GPU"):
            resolve_device(value)
        return
    one_step(cfg, resolve_device(cfg.device))


@pytest.mark.parametrize("key", list(REGISTRIES))
def test_unknown_value_lists_the_registered_ones(key):
    registered, bad = ", ".join(REGISTRIES[key]), UNREGISTERED.get(key, "nope")
    with pytest.raises(ConfigError, match=f"{key}: unknown '{bad}'; registered: {registered}"):
        build_config({**TINY, **NEEDS.get(key, {}), key: bad}, "test")


@pytest.mark.parametrize("key", [key for key in REGISTRIES if key != "loss"])  # --loss also takes a mix
def test_command_line_choices_come_from_the_registry(key, capsys):
    parser = argparse.ArgumentParser()
    add_override_args(parser)
    flag = f"--{key.replace('_', '-')}"
    assert parser.parse_args([flag, next(iter(REGISTRIES[key]))]) is not None
    with pytest.raises(SystemExit):
        parser.parse_args([flag, "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "lookup, match",
    [
        (lambda: get_loss("nope"), "loss: unknown 'nope'; registered: bce, focal"),
        (lambda: make_optimizer("nope", torch.nn.Linear(1, 1), 0.1, 0.0), "registered: adamw, sgd"),
        (lambda: train_transform("nope"), "registered: none, flips, light"),
        (lambda: tta_views(torch.zeros(1, 1, 2, 2), "nope"), "registered: none, flip, d4"),
        (lambda: channel_matrix("nope"), "registered: rgby, rgb, g, ry_gy_b, by_ry_g"),
        (lambda: resolve_device("nope"), "registered: auto, cpu, cuda"),
        (lambda: resolve_numerics("nope", torch.device("cpu")), "registered: auto, bf16, fp16, fp32"),
        (lambda: build_head("nope", 8, 28, 0.0), "head: unknown 'nope'; registered: avg, avgmax, attention"),
        (lambda: BatchTransform(np.eye(4), STATS, normalize="nope"), "registered: dataset, image"),
        (lambda: crop_windows(torch.zeros(1, 1, 4, 4), 2, 3), "tta_crops: unknown '3'; registered: 1, 4, 5"),
        (lambda: predict_probs(nn.Identity(), [], "none", CPU, merge="nope"), "registered: mean, max"),
    ],
)
def test_no_registry_falls_back_silently(lookup, match):
    with pytest.raises(ConfigError, match=match):
        lookup()


def test_sgd_and_adamw_skip_weight_decay_on_norms_and_biases():
    model = build_model(build_config(TINY, "test"))
    for name in ("adamw", "sgd"):
        groups = make_optimizer(name, model, 0.1, 0.05).param_groups
        decays = {g["weight_decay"] for g in groups}
        assert decays == {0.0, 0.05}
        no_decay = next(g for g in groups if g["weight_decay"] == 0.0)["params"]
        assert all(p.ndim <= 1 for p in no_decay)


def test_compile_trains_one_step(monkeypatch):
    """``compile: true`` wraps the model in torch.compile, and the compiled model trains and predicts.

    Dynamo and AOTAutograd trace the model here (``aot_eager``); inductor's code generation, some 50 s
    of C++ compilation on a cold CPU cache, is torch's own to test and is left out.
    """
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend="aot_eager", **kw))
    cfg = build_config({**TINY, "compile": True}, "test")
    engine = loop.build_engine(cfg, StainStats(mean=np.full(4, 7.0), cov=np.eye(4)), 2, Context())
    assert isinstance(engine.step_model, torch._dynamo.eval_frame.OptimizedModule)
    one_step(cfg, torch.device("cpu"))
