"""Predict folds again from their checkpoints and assemble ``oof/<experiment>/``.

``python -m solution.predict --config C [--tta MODE] [--redo]`` predicts every
fold whose predictions are missing or were made with another TTA (or all, with
``--redo``), then assembles ``oof/<name>/oof.parquet`` (each training image
predicted by the fold model that never saw it), ``test.parquet`` (mean over the
fold models) and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import logging

from solution.core.cli import add_oof_arg, user_errors
from solution.data.cache import load_images
from solution.training.distributed import resolve_device
from solution.training.inference import predict_fold
from solution.training.runs import (
    add_experiment_args,
    assemble,
    fold_dir,
    load_checkpoint,
    load_experiment,
    predictions_current,
)

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Predict missing folds from their checkpoints (with TTA) and assemble oof/<experiment>/."
    )
    add_experiment_args(parser)
    add_oof_arg(parser)
    parser.add_argument(
        "--redo", action="store_true", help="predict every fold again, not only missing or outdated ones"
    )
    args = parser.parse_args(argv)
    with user_errors():
        cfg, folds, dataset = load_experiment(args)
        device = resolve_device(cfg.device)
        todo = [
            k
            for k in range(folds.n_folds)
            if args.redo or not predictions_current(fold_dir(args.runs_dir, cfg, k), cfg, folds)
        ]
        if todo:  # the cached images, opened once for every fold
            images = load_images(dataset, "train", dataset.train_ids, cfg.image_size)
            test_images = load_images(dataset, "test", dataset.test_ids, cfg.image_size)
            for k in todo:
                d = fold_dir(args.runs_dir, cfg, k)
                model, stats = load_checkpoint(cfg, folds, d / "checkpoint.pt", device)
                predict_fold(cfg, model, stats, dataset, images, test_images, folds, k, d, device)
        out = assemble(cfg, dataset, folds, args.runs_dir, args.oof_dir)
        log.info(f"wrote {out}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
