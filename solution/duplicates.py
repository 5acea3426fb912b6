"""Near-duplicate images of a dataset and its extra data: ``python -m solution.duplicates --data DIR``.

Writes the pairs, the groups of twins and what was hashed into folds/ (see ``solution.data.duplicates``);
``python -m solution.folds`` then keeps each group in one fold.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.artifacts.folds import DuplicatesMeta, write_duplicates
from solution.core.cli import user_errors
from solution.core.registry import FRACTION, Interval
from solution.core.workspace import DUPLICATES_FILE, FOLDS_DIR
from solution.data.duplicates import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_CORRELATION,
    MAX_DISTANCE_LIMIT,
    find_duplicates,
    summary,
)

log = logging.getLogger(__spec__.name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m solution.duplicates",
        description="Find near-duplicate images (any flip or rotation) across train, test and extra datasets.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory in the competition layout")
    p.add_argument(
        "--extra", type=Path, nargs="*", default=[], help="extra training datasets (train.csv and train/, e.g. HPAv18)"
    )
    p.add_argument(
        "--size",
        type=Interval(1).arg_type(int),
        default=64,
        help="image size to hash at (read from a cache of this or a larger size where one exists, else cached)",
    )
    p.add_argument(
        "--max-distance",
        type=Interval(0, MAX_DISTANCE_LIMIT).arg_type(int),
        default=DEFAULT_MAX_DISTANCE,
        help="largest Hamming distance (of 64 bits) that makes a pair",
    )
    p.add_argument(
        "--min-correlation",
        type=FRACTION.arg_type(float),
        default=DEFAULT_MIN_CORRELATION,
        help="the stain check: a pair is a twin when its stains' band-pass correlation reaches this",
    )
    p.add_argument("--out", type=Path, default=FOLDS_DIR / DUPLICATES_FILE, help="pairs file; groups go beside it")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with user_errors():
        found = find_duplicates(args.data, args.extra, args.size, args.max_distance, args.min_correlation)
        dirs = {"train": args.data, "test": args.data, **{d.name: d for d in args.extra}}
        meta = DuplicatesMeta(
            sources={name: str(d.resolve()) for name, d in dirs.items()},
            size=args.size,
            max_distance=args.max_distance,
            min_correlation=args.min_correlation,
        )
        groups_file = write_duplicates(args.out, found, meta)
        log.info(summary(found, args.max_distance, args.min_correlation))
        log.info(f"wrote {args.out}, {groups_file} and {DuplicatesMeta.path(args.out)}")


if __name__ == "__main__":
    main()
