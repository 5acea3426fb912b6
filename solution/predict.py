"""Test-time-augmented predictions and their assembly into per-experiment files.

``python -m solution.predict --config C`` predicts every fold whose predictions
are missing from its checkpoint (``runs/<name>/fold<k>/checkpoint.pt``), then
assembles ``oof/<name>/oof.parquet`` (each training image predicted by the fold
model that never saw it), ``test.parquet`` (mean over the fold models) and
``manifest.json``. ``solution.train`` calls the same functions at the end of
each fold. A fold is predicted again when its ``predictions.json`` does not
match the config (e.g. ``--tta flip`` on the command line) or with ``--redo``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from solution.artifacts import (
    Folds,
    align,
    atomic_write_json,
    atomic_write_parquet,
    check_same_ids,
    open_matching_dataset,
    probs_frame,
    read_folds,
    read_json,
    read_probs_file,
    run_info,
    write_predictions,
)
from solution.classes import PROB_COLUMNS
from solution.config import ExperimentConfig, add_override_args, load_config, overrides_from_args
from solution.data.cache import load_images
from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.layout import Dataset
from solution.distributed import Context, resolve_device
from solution.errors import ArtifactError, KitError
from solution.models import build_model

TTA_VIEWS = {"none": 1, "flip": 2, "d4": 8}
PREDICTIONS_RECORD = "predictions.json"  # written after a fold's oof/test parquet files: what made them


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The batch under each TTA transform, stacked: (V * B, C, H, W). d4 = 4 rotations x optional flip."""
    if mode == "none":
        return x
    if mode == "flip":
        return torch.cat([x, x.flip(-1)])
    rotations = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return torch.cat(rotations + [r.flip(-1) for r in rotations])


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, tta: str, device: torch.device) -> np.ndarray:
    """(N, 28) sigmoid probabilities, averaged over the TTA views, all views of a batch in one forward."""
    model.eval()
    views = TTA_VIEWS[tta]
    out = []
    for x, _ in loader:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(tta_views(x, tta))
        probs = torch.sigmoid(logits.float()).view(views, x.shape[0], -1).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def make_loader(
    cfg: ExperimentConfig, images: np.ndarray, positions: np.ndarray, labels: np.ndarray | None = None, transform=None, shuffle: bool = False, ctx: Context = Context()
) -> DataLoader:
    """Batches of ``images[positions]``; a training loader (``shuffle``) under torchrun gives each rank its share."""
    dataset = HpaDataset(images, positions, labels, channel_matrix(cfg.channels), transform)
    drop_last = shuffle and len(dataset) > cfg.batch_size * ctx.world_size
    sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed, drop_last=drop_last) if shuffle and ctx.distributed else None
    return DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle and sampler is None, sampler=sampler, drop_last=drop_last,
        num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
    )


def fold_dir(runs_dir: Path, cfg: ExperimentConfig, fold: int) -> Path:
    return runs_dir / cfg.name / f"fold{fold}"


# Config keys that change how a trained model is run, not what it learned.
INFERENCE_KEYS = ("tta", "num_workers", "device")


def run_identity(cfg: ExperimentConfig, folds: Folds) -> dict:
    """What a fold's saved state must match to be reused: the training config and the folds."""
    training = {k: v for k, v in cfg.to_dict().items() if k not in INFERENCE_KEYS}
    return {"config": training, "folds_hash": folds.hash}


def check_reusable(path: Path, saved: dict, cfg: ExperimentConfig, folds: Folds) -> None:
    expected = run_identity(cfg, folds)
    if {k: saved.get(k) for k in expected} != expected:
        raise ArtifactError(f"{path} belongs to a run with another config or other folds: delete {path.parent.parent}/ to retrain {cfg.name}, or pass --runs-dir")


def fold_positions(dataset: Dataset, folds: Folds, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (in ``dataset.train_ids`` order) of the training and validation images of a fold."""
    check_same_ids(folds.ids, dataset.train_ids, "folds/folds.csv", f"{dataset.root}/train.csv")
    fold_of = dict(zip(folds.ids, folds.fold))
    f = np.array([fold_of[i] for i in dataset.train_ids])
    return np.flatnonzero(f != fold), np.flatnonzero(f == fold)


def predict_fold(cfg: ExperimentConfig, model: nn.Module, dataset: Dataset, folds: Folds, fold: int, out_dir: Path, device: torch.device) -> None:
    """Write the fold's TTA predictions: ``oof.parquet`` for its validation images, ``test.parquet``."""
    _, val_pos = fold_positions(dataset, folds, fold)
    train_images = load_images(dataset, "train", dataset.train_ids, cfg.image_size)
    test_images = load_images(dataset, "test", dataset.test_ids, cfg.image_size)
    val_ids = [dataset.train_ids[i] for i in val_pos]
    oof = predict_probs(model, make_loader(cfg, train_images, val_pos), cfg.tta, device)
    test = predict_probs(model, make_loader(cfg, test_images, np.arange(len(test_images))), cfg.tta, device)
    atomic_write_parquet(out_dir / "oof.parquet", probs_frame(val_ids, oof))
    atomic_write_parquet(out_dir / "test.parquet", probs_frame(dataset.test_ids, test))
    atomic_write_json(out_dir / PREDICTIONS_RECORD, {"tta": cfg.tta, **run_identity(cfg, folds)})


def predictions_current(out_dir: Path, cfg: ExperimentConfig, folds: Folds) -> bool:
    """Whether a fold folder holds predictions of this config's model, folds and TTA."""
    record = out_dir / PREDICTIONS_RECORD
    return record.is_file() and read_json(record) == {"tta": cfg.tta, **run_identity(cfg, folds)}


def load_checkpoint(cfg: ExperimentConfig, folds: Folds, path: Path, device: torch.device) -> nn.Module:
    if not path.is_file():
        raise ArtifactError(f"missing checkpoint {path}: train the fold first (python -m solution.train --config ... --fold ...)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_reusable(path, state, cfg, folds)
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device)


def assemble(cfg: ExperimentConfig, dataset: Dataset, folds: Folds, runs_dir: Path, oof_dir: Path) -> Path:
    """Join the fold predictions into ``oof/<name>/`` and write its manifest; returns that folder."""
    oof_parts, test_parts, fold_metrics = [], [], []
    for k in range(folds.n_folds):
        d = fold_dir(runs_dir, cfg, k)
        if not (d / "metrics.json").is_file():
            raise ArtifactError(f"fold {k} of {cfg.name} is not trained ({d}/metrics.json missing): run python -m solution.train --config ... --fold {k}")
        metrics = read_json(d / "metrics.json")
        check_reusable(d / "metrics.json", metrics, cfg, folds)
        if not predictions_current(d, cfg, folds):
            raise ArtifactError(f"{d} holds no predictions of this config with tta {cfg.tta}: run python -m solution.predict --config ... (it re-predicts such folds)")
        oof = read_probs_file(d / "oof.parquet")
        expected = [i for i, f in zip(folds.ids, folds.fold) if f == k]
        check_same_ids(expected, oof["Id"].tolist(), f"fold {k} of folds/folds.csv", f"{d}/oof.parquet")
        test = read_probs_file(d / "test.parquet")
        check_same_ids(dataset.test_ids, test["Id"].tolist(), "sample_submission.csv", f"{d}/test.parquet")
        oof_parts.append(oof)
        test_parts.append(align(test, dataset.test_ids)[list(PROB_COLUMNS)].to_numpy(np.float32))
        fold_metrics.append({"fold": k, **{key: metrics[key] for key in ("val_macro_f1_at_0.5", "val_macro_f1_fitted", "val_loss") if key in metrics}})
    oof_all = align(pd.concat(oof_parts), folds.ids)
    test_all = probs_frame(dataset.test_ids, np.mean(test_parts, axis=0))
    manifest = {
        "experiment": cfg.name,
        "config": cfg.to_dict(),
        "folds_hash": folds.hash,
        "n_folds": folds.n_folds,
        "data_dir": str(dataset.root.resolve()),
        "tta": cfg.tta,
        "fold_metrics": fold_metrics,
        **run_info(),
    }
    out = oof_dir / cfg.name
    write_predictions(out, oof_all, test_all, manifest)
    return out


def add_experiment_args(parser: argparse.ArgumentParser) -> None:
    """The options that locate an experiment and its inputs, shared by train and predict."""
    parser.add_argument("--config", required=True, type=Path, help="experiment YAML (configs/<set>/<experiment>.yaml)")
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: the one the folds were made from)")
    parser.add_argument("--folds-dir", type=Path, default=Path("folds"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    add_override_args(parser)


def load_experiment(args: argparse.Namespace) -> tuple[ExperimentConfig, Folds, Dataset]:
    """The resolved config, the folds and the dataset they were made from, checked against each other."""
    cfg = load_config(args.config, overrides_from_args(args))
    folds = read_folds(args.folds_dir)
    return cfg, folds, open_matching_dataset(folds, args.data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Predict missing folds from their checkpoints (with TTA) and assemble oof/<experiment>/.")
    add_experiment_args(parser)
    parser.add_argument("--oof-dir", type=Path, default=Path("oof"))
    parser.add_argument("--redo", action="store_true", help="predict every fold again, not only missing or outdated ones")
    args = parser.parse_args(argv)
    try:
        cfg, folds, dataset = load_experiment(args)
        device = resolve_device(cfg.device)
        for k in range(folds.n_folds):
            d = fold_dir(args.runs_dir, cfg, k)
            if args.redo or not predictions_current(d, cfg, folds):
                predict_fold(cfg, load_checkpoint(cfg, folds, d / "checkpoint.pt", device), dataset, folds, k, d, device)
        out = assemble(cfg, dataset, folds, args.runs_dir, args.oof_dir)
    except KitError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {out}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
