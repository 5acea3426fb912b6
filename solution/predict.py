"""Predict folds again from their checkpoints and assemble ``oof/<experiment>/``: ``python -m solution.predict``.

``--config C [--tta MODE] [--redo]`` predicts every fold whose predictions are missing or were made with
another TTA or from other test files (or all, with ``--redo``), then assembles ``oof/<name>/oof.parquet`` (each
training image predicted by the fold model that never saw it), ``test.parquet`` (the mean over the fold models)
and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import logging

from solution.core.cli import add_oof_arg, user_errors
from solution.training.experiment import add_experiment_args, load_experiment, predict_experiment

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
        out = predict_experiment(cfg, folds, dataset, args.runs_dir, args.oof_dir, args.redo)
        log.info(f"wrote {out}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
