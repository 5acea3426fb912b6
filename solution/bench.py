"""Benchmarks of the kit's stages against their baselines: ``python -m solution.bench STAGE``.

Each prints a table and then every figure as one ``name=value`` line; the
figures and the commands that produced them are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from solution.benchmarks import data_cache, data_groups, data_hash, stack, thresholds, train
from solution.core.cli import user_errors

BENCHES: dict[str, tuple[Callable[[], dict[str, float]], ...]] = {
    "train": (train.run,),
    "data": (data_cache.run, data_hash.run),
    "duplicates": (data_groups.run,),
    "thresholds": (thresholds.run,),
    "stack": (stack.run,),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark a stage of the kit; prints name=value figures.")
    parser.add_argument("stage", choices=list(BENCHES), help="what to measure")
    parser.add_argument(
        "--quick", action="store_true", help="train only: every row at a CPU size (scripts/gpu_check.sh --dry-run)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.stage != "train":
        parser.error("--quick applies to the train stage only")
    runs = (partial(train.run, quick=True),) if args.quick else BENCHES[args.stage]
    with user_errors():
        figures = {name: value for run in runs for name, value in run().items()}
        print()
        for name, value in figures.items():
            print(f"{name}={value:.4g}")


if __name__ == "__main__":
    main()
