"""Train an experiment on one or more folds: ``python -m solution.train --config C [--fold K ...]``.

Runs under ``torchrun`` too (DDP, one process per GPU). See ``solution.training.loop``.
"""

from __future__ import annotations

import argparse

from solution.core.cli import user_errors
from solution.core.errors import ConfigError
from solution.training.distributed import setup, teardown
from solution.training.experiment import add_experiment_args, load_experiment
from solution.training.loop import train_fold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train an experiment on one or more folds.")
    add_experiment_args(parser)
    parser.add_argument("--fold", type=int, nargs="*", default=None, help="fold(s) to train (default: all)")
    args = parser.parse_args(argv)
    with user_errors():
        cfg, folds, dataset = load_experiment(args)
        for k in args.fold or []:
            if not 0 <= k < folds.n_folds:
                raise ConfigError(f"--fold {k}: the folds in {args.folds_dir}/ are numbered 0..{folds.n_folds - 1}")
        ctx = setup(cfg.device)
        try:
            for k in args.fold if args.fold else range(folds.n_folds):
                train_fold(cfg, dataset, folds, k, args.runs_dir, ctx)
        finally:
            teardown(ctx)


if __name__ == "__main__":
    main()
