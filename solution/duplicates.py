"""Near-duplicate images of a dataset and its extra data: ``python -m solution.duplicates --data DIR``.

Writes the pairs and the groups into folds/ (see ``solution.data.duplicates``); ``python -m solution.folds``
then keeps each group in one fold.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.artifacts.folds import write_duplicates
from solution.core.cli import user_errors
from solution.core.registry import Interval
from solution.core.workspace import DUPLICATES_FILE, FOLDS_DIR
from solution.data.duplicates import DEFAULT_MAX_DISTANCE, MAX_DISTANCE_LIMIT, find_duplicates, summary

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m solution.duplicates",
        description="Find near-duplicate images (any flip or rotation) across train, test and extra datasets.",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset directory in the competition layout")
    parser.add_argument(
        "--extra", type=Path, nargs="*", default=[], help="extra training datasets (train.csv and train/, e.g. HPAv18)"
    )
    parser.add_argument(
        "--size",
        type=Interval(1).arg_type(int),
        default=64,
        help="image size to read (through the cache) before hashing",
    )
    parser.add_argument(
        "--max-distance",
        type=Interval(0, MAX_DISTANCE_LIMIT).arg_type(int),
        default=DEFAULT_MAX_DISTANCE,
        help="largest Hamming distance (of 64 bits) that makes a pair",
    )
    parser.add_argument("--out", type=Path, default=FOLDS_DIR / DUPLICATES_FILE, help="pairs file; groups go beside it")
    args = parser.parse_args(argv)
    with user_errors():
        found = find_duplicates(args.data, args.extra, args.size, args.max_distance)
        images = found.images
        groups_file = write_duplicates(
            args.out, images.ids, images.splits, found.a, found.b, found.distance, found.groups
        )
        log.info(summary(images, found.a, found.b, found.groups, args.max_distance))
        log.info(f"wrote {args.out} and {groups_file}")


if __name__ == "__main__":
    main()
