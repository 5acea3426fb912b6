"""Predict folds again from their checkpoints and assemble ``oof/<experiment>/``: ``python -m solution.predict``;
or predict from a bundle, offline: ``python -m solution.predict --bundle BUNDLE --data DIR --out FILE.csv``.

``--config C [--tta MODE] [--redo]`` predicts every fold whose predictions are missing or were made with
another TTA or from other test files (or all, with ``--redo``), then assembles ``oof/<name>/oof.parquet`` (each
training image predicted by the fold model that never saw it), ``test.parquet`` (the mean over the fold models)
and ``manifest.json``.

``--bundle`` (made by ``python -m solution.export``) writes the exported submission's CSV for ``DIR``'s test
images, or, with ``--table`` or for a folder without ``sample_submission.csv``, one row per image with its
labels and the 28 class scores (``solution.offline.inference``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.core.cli import add_oof_arg, user_errors
from solution.offline.inference import predict_bundle
from solution.training.config import overrides_from_args
from solution.training.experiment import add_experiment_args, load_experiment, predict_experiment

log = logging.getLogger(__spec__.name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Predict missing folds from their checkpoints (with TTA) and assemble oof/<experiment>/; "
        "or, with --bundle, write a submission (or a table of labels and scores) offline from an exported bundle."
    )
    add_experiment_args(p, required=False)
    add_oof_arg(p)
    p.add_argument("--redo", action="store_true", help="predict every fold again, not only missing or outdated ones")
    offline = p.add_argument_group("offline, from a bundle (python -m solution.export)")
    offline.add_argument("--bundle", type=Path, default=None, help="the bundle folder; needs --data and --out")
    offline.add_argument("--out", type=Path, default=None, help="the .csv to write")
    offline.add_argument(
        "--table",
        action="store_true",
        help="write Id,Predicted,p0..p27 (labels and class scores) even where the folder has sample_submission.csv",
    )
    offline.add_argument(
        "--cache-dir", type=Path, default=None, help="where to cache the resized images (default: a temporary folder)"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if (args.config is None) == (args.bundle is None):
        p.error("name either --config (predict an experiment's folds) or --bundle (predict offline)")
    if args.bundle is not None and (args.data is None or args.out is None):
        p.error("--bundle needs --data DIR (the images) and --out FILE.csv")
    overrides = overrides_from_args(args)
    if args.bundle is not None and set(overrides) - {"device"}:
        p.error(f"--bundle predicts with the configs it holds: of the overrides only --device applies, not {overrides}")
    with user_errors():
        if args.bundle is not None:
            done = predict_bundle(args.bundle, args.data, args.out, args.table, args.cache_dir, overrides.get("device"))
            what = "table of labels and scores" if done.table else "submission"
            log.info(
                f"wrote {done.out}: the {what} of {done.images} images ({done.mean_labels:.2f} labels per image; "
                f"{done.manifest.source}, rule {done.manifest.rule})"
            )
            return
        cfg, folds, dataset = load_experiment(args)
        out = predict_experiment(cfg, folds, dataset, args.runs_dir, args.oof_dir, args.redo)
        log.info(f"wrote {out}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
