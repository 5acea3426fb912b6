"""Write a synthetic HPA-like dataset in the competition layout: ``python -m solution.synthetic OUT``.

See ``solution.data.synthetic`` for what the images show.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from solution.core.cli import user_errors
from solution.core.registry import SEED, Interval
from solution.data.synthetic import FRACTION, MIN_SIZE, POSITIVE, generate

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m solution.synthetic",
        description="Write a synthetic HPA-like dataset in the Kaggle competition layout.",
    )
    parser.add_argument("out", type=Path, help="output folder (must not exist unless --force)")
    parser.add_argument("--n-train", type=Interval(1).arg_type(int), default=1200)
    parser.add_argument("--n-test", type=Interval(1).arg_type(int), default=400)
    parser.add_argument(
        "--size", type=Interval(MIN_SIZE).arg_type(int), default=64, help=f"image side in pixels (>= {MIN_SIZE})"
    )
    parser.add_argument("--seed", type=SEED.arg_type(int), default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--density", type=POSITIVE.arg_type(), default=1.0, help="scale of the cell count per field (1: the demo's)"
    )
    parser.add_argument(
        "--brightness", type=POSITIVE.arg_type(), default=1.0, help="scale of the microscope's gain (1: the demo's)"
    )
    parser.add_argument(
        "--label-noise",
        type=FRACTION.arg_type(),
        default=0.0,
        help="probability that a label of train.csv is replaced by a wrong class (test_labels.csv stays true)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with user_errors():
        out = generate(
            args.out,
            args.n_train,
            args.n_test,
            args.size,
            args.seed,
            args.force,
            density=args.density,
            brightness=args.brightness,
            label_noise=args.label_noise,
        )
        log.info(
            f"wrote {args.n_train} train + {args.n_test} test fields ({args.size} px, seed {args.seed}) "
            f"to {out} in {time.perf_counter() - start:.1f} s"
        )


if __name__ == "__main__":
    main()
