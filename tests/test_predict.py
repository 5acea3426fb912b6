import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from solution import predict
from solution.core.errors import ConfigError
from solution.training import experiment, inference
from solution.training.config import build_config
from solution.training.inference import predict_probs
from solution.training.models import build_model
from solution.training.numerics import Numerics
from solution.training.tta import crop_windows, tta_views


class TopLeft(nn.Module):
    """Logit = the top-left pixel of channel 0, repeated for 28 classes."""

    def forward(self, x):
        return x[:, 0, 0, 0].unsqueeze(1).repeat(1, 28)


def corners_batch():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 0, 2], x[0, 0, 2, 0], x[0, 0, 2, 2] = 1.0, 2.0, 3.0, 4.0
    return x


@pytest.mark.parametrize(
    "mode, expected_logits",
    [
        ("none", [1.0]),
        ("flip", [1.0, 2.0]),  # horizontal flip brings the top-right corner to the top left
        ("d4", [1.0, 2.0, 3.0, 4.0] * 2),  # 8 views: each corner reaches the top left twice
    ],
)
def test_tta_views_by_hand(mode, expected_logits):
    views = tta_views(corners_batch(), mode)
    assert sorted(views[:, 0, 0, 0].tolist()) == sorted(expected_logits)
    loader = DataLoader(TensorDataset(corners_batch(), torch.zeros(1, 28)), batch_size=1)
    probs = predict_probs(TopLeft(), loader, mode, Numerics("fp32", torch.device("cpu"), channels_last=False))
    expected = torch.sigmoid(torch.tensor(expected_logits)).mean().item()
    np.testing.assert_allclose(probs, np.full((1, 28), expected), rtol=1e-6)


def numbered_batch():
    """One 4 x 4 image whose pixels hold their numbers, row * 4 + column."""
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


CORNERS_2X2 = [0.0, 2.0, 8.0, 10.0]  # the top-left pixels of the 2 x 2 windows at the corners; the centre's is 5


@pytest.mark.parametrize(
    "crops, mode, expected_logits",
    [
        (1, "none", [5.0]),
        (4, "none", CORNERS_2X2),
        (5, "none", [*CORNERS_2X2, 5.0]),
        (4, "flip", [0.0, 1.0, 2.0, 3.0, 8.0, 9.0, 10.0, 11.0]),  # each window flipped: its top-right pixel too
    ],
)
@pytest.mark.parametrize("merge", ["mean", "max"])
def test_tta_crops_and_merge_by_hand(crops, mode, expected_logits, merge):
    views = torch.cat([tta_views(w, mode) for w in crop_windows(numbered_batch(), 2, crops)])
    assert views.shape[-2:] == (2, 2) and sorted(views[:, 0, 0, 0].tolist()) == sorted(expected_logits)
    loader = DataLoader(TensorDataset(numbered_batch(), torch.zeros(1, 28)), batch_size=1)
    cpu = Numerics("fp32", torch.device("cpu"), channels_last=False)
    probs = predict_probs(TopLeft(), loader, mode, cpu, crop=2, crops=crops, merge=merge)
    view_probs = torch.sigmoid(torch.tensor(expected_logits))
    expected = view_probs.mean() if merge == "mean" else view_probs.max()
    np.testing.assert_allclose(probs, np.full((1, 28), expected.item()), rtol=1e-6)


def test_max_over_views_is_at_least_their_mean():
    loader = DataLoader(TensorDataset(torch.randn(6, 4, 8, 8), torch.zeros(6, 28)), batch_size=3)
    model, cpu = LayoutRecorder(), Numerics("fp32", torch.device("cpu"), channels_last=False)
    mean, top = (predict_probs(model, loader, "d4", cpu, crop=6, crops=5, merge=m) for m in ("mean", "max"))
    assert (top >= mean).all() and (top > mean).any()


def test_d4_views_are_distinct_and_batched():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    views = tta_views(x, "d4")
    assert views.shape == (16, 1, 4, 4)
    flat = {tuple(v.flatten().tolist()) for v in views[0::2]}  # first image of each view
    assert len(flat) == 8


@pytest.mark.parametrize(
    "backbone, channels, n_in",
    [("test_efficientnet", "rgby", 4), ("test_convnext", "g", 1), ("smp:resnet18", "ry_gy_b", 3)],
)
def test_models_take_their_setup_and_give_28_logits(backbone, channels, n_in):
    model = build_model(build_config({"name": "m", "backbone": backbone, "channels": channels}, "test"))
    assert model(torch.zeros(2, n_in, 32, 32)).shape == (2, 28)


@pytest.mark.parametrize(
    "backbone, match",
    [
        ("resnet34x", "unknown timm model 'resnet34x' in backbone 'resnet34x'; close matches: resnet34"),
        ("smp:resnet19", "unknown smp encoder 'resnet19'"),
    ],
)
def test_unknown_backbone_fails_loudly(backbone, match):
    with pytest.raises(ConfigError, match=match):
        build_model(build_config({"name": "m", "backbone": backbone}, "test"))


def test_pretrained_offline_gives_clear_message(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="could not load pretrained weights for 'resnet18'.*pretrained: false"):
        build_model(build_config({"name": "m", "backbone": "resnet18", "pretrained": True}, "test"))


class LayoutRecorder(nn.Module):
    """A convolution to 28 pooled logits that records whether each input it gets is channels-last."""

    def __init__(self):
        super().__init__()
        self.conv, self.layouts = nn.Conv2d(4, 28, 3), []

    def forward(self, x):
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.conv(x).mean((2, 3))


def test_tta_views_take_the_layout_the_model_predicts_in():
    loader = DataLoader(TensorDataset(torch.randn(3, 4, 8, 8), torch.zeros(3, 28)), batch_size=3)
    model = LayoutRecorder()
    cpu = torch.device("cpu")
    plain = predict_probs(model, loader, "d4", Numerics("fp32", cpu, channels_last=False))
    last = predict_probs(model.to(memory_format=torch.channels_last), loader, "d4", Numerics("fp32", cpu, True))
    assert model.layouts == [False, True]
    np.testing.assert_allclose(last, plain, rtol=1e-5)


def test_predict_puts_the_model_and_its_views_in_the_devices_layout(trained, monkeypatch):
    """Where the device's layout is channels-last (CUDA; here the CPU told so), the fold model and its d4 views are."""
    real_numerics, real_predict = experiment.resolve_numerics, inference.predict_probs
    monkeypatch.setattr(experiment, "resolve_numerics", lambda *a: replace(real_numerics(*a), channels_last=True))
    seen = []

    def recording(model, loader, tta, numerics, transform, *windows):
        stem = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
        seen.append(stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous())
        views = tta_views(transform(next(iter(loader))[0]), tta, numerics.memory_format)
        seen.append(views.is_contiguous(memory_format=torch.channels_last) and not views.is_contiguous())
        return real_predict(model, loader, tta, numerics, transform, *windows)

    monkeypatch.setattr(inference, "predict_probs", recording)
    before = pd.read_parquet("oof/tiny_effnet/oof.parquet")
    predict.main(["--config", "configs/tiny_effnet.yaml", "--redo"])
    assert seen and all(seen)
    after = pd.read_parquet("oof/tiny_effnet/oof.parquet")
    np.testing.assert_allclose(after.iloc[:, 1:].to_numpy(), before.iloc[:, 1:].to_numpy(), atol=1e-5)


def _other_test_files(data, change: str) -> None:
    """The test set changed: one stain rewritten with other pixels, or the last test image gone."""
    rows = (data / "sample_submission.csv").read_text().splitlines()
    last = rows[-1].split(",")[0]
    if change == "pixels":
        png = data / "test" / f"{last}_green.png"
        png.write_bytes((data / "test" / f"{last}_red.png").read_bytes())
    else:
        (data / "sample_submission.csv").write_text("\n".join(rows[:-1]) + "\n")
        for png in (data / "test").glob(f"{last}_*"):
            png.unlink()


@pytest.mark.parametrize("change", ["pixels", "ids"])
def test_predictions_made_from_other_test_files_are_redone(trained, tiny_dataset_master, change):
    """A fold's predictions are keyed to the test files they were made from, as the pixel cache is: after the test
    set changed, predict redoes them (it kept the old test.parquet and said it wrote it)."""
    data = Path(shutil.copytree(tiny_dataset_master, trained / "data"))  # copytree keeps the files' mtimes
    args = ["--config", "configs/tiny_convnext.yaml", "--data", str(data)]
    fold_test = trained / "runs" / "tiny_convnext" / "fold0" / "test.parquet"
    before, kept = pd.read_parquet("oof/tiny_convnext/test.parquet"), fold_test.stat().st_mtime_ns
    predict.main(args)  # the same test files: nothing to redo
    assert fold_test.stat().st_mtime_ns == kept
    _other_test_files(data, change)
    predict.main(args)
    after = pd.read_parquet("oof/tiny_convnext/test.parquet")
    assert fold_test.stat().st_mtime_ns != kept
    if change == "pixels":
        assert after["Id"].tolist() == before["Id"].tolist()
        assert not np.array_equal(after.iloc[-1, 1:], before.iloc[-1, 1:])
        np.testing.assert_array_equal(after.iloc[:-1, 1:], before.iloc[:-1, 1:])
    else:
        assert after["Id"].tolist() == before["Id"].tolist()[:-1]
