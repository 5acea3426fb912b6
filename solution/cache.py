"""Build the pixel cache of a dataset up front: ``python -m solution.cache --data DIR --size S``.

Training builds it on first use too; see ``solution.data.cache`` for what the cache holds.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from solution.core.cli import user_errors
from solution.core.registry import Interval
from solution.core.workspace import CACHE_DIR
from solution.data.cache import SPLITS, ensure_cache, make_plan, read_stats
from solution.data.layout import open_dataset

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m solution.cache",
        description="Decode every image of a dataset once into a resized uint8 memmap per split, with the stains' "
        "mean and covariance. A killed build resumes where it stopped.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset directory (train.csv, train/, test/, sample_submission.csv)"
    )
    parser.add_argument(
        "--size", type=Interval(1).arg_type(int), required=True, help="side of the cached images in pixels"
    )
    parser.add_argument(
        "--workers",
        type=Interval(1).arg_type(int),
        default=None,
        help="decoding processes (default: the number of CPU cores)",
    )
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    args = parser.parse_args(argv)
    with user_errors():
        dataset = open_dataset(args.data)
        for split in args.splits:
            plan = make_plan(dataset, split, dataset.ids_of(split), args.size, args.cache_dir)
            ensure_cache(plan, args.workers)
            stats = read_stats(plan)
            mean, std = np.round(stats.mean, 2).tolist(), np.round(np.sqrt(np.diag(stats.cov)), 2).tolist()
            log.info(f"{split}: {plan.final}\n  mean R,G,B,Y {mean}  std {std}")


if __name__ == "__main__":
    main()
