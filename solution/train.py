"""Train an experiment on one or more folds: ``python -m solution.train --config C [--fold K ...]``.

Runs under ``torchrun`` too (DDP, one process per GPU). See ``solution.training.loop``.
"""

from __future__ import annotations

import argparse
import os

from solution.core.cli import user_errors
from solution.core.errors import ConfigError
from solution.training.distributed import setup, teardown
from solution.training.experiment import add_experiment_args, load_experiment
from solution.training.loop import train_fold


def share(text: str) -> tuple[int, int]:
    """An argparse type: ``J/N`` with 0 <= J < N, the J-th of N training jobs run side by side."""
    try:
        job, jobs = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected J/N such as 0/2, got {text!r}") from None
    if not 0 <= job < jobs:
        raise argparse.ArgumentTypeError(f"J/N needs 0 <= J < N, got {text}")
    return job, jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train an experiment on one or more folds.")
    add_experiment_args(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--fold", type=int, nargs="*", default=None, help="fold(s) to train (default: all)")
    which.add_argument(
        "--share",
        type=share,
        default=None,
        metavar="J/N",
        help="the J-th of N jobs side by side: folds J, J + N, ...; each job's loaders get 1/N of the CPUs",
    )
    args = parser.parse_args(argv)
    with user_errors():
        cfg, folds, dataset = load_experiment(args)
        for k in args.fold or []:
            if not 0 <= k < folds.n_folds:
                raise ConfigError(f"--fold {k}: the folds in {args.folds_dir}/ are numbered 0..{folds.n_folds - 1}")
        todo = args.fold or list(range(folds.n_folds))
        if args.share is not None:
            todo = [k for k in todo if k % args.share[1] == args.share[0]]
            os.environ["TRAIN_JOBS"] = str(args.share[1])  # the N jobs share the CPUs: so do their loader workers
        ctx = setup(cfg.device)
        try:
            for k in todo:
                train_fold(cfg, dataset, folds, k, args.runs_dir, ctx)
        finally:
            teardown(ctx)


if __name__ == "__main__":
    main()
