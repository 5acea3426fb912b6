"""Benchmarks of the kit's stages against their baselines: ``python -m solution.bench STAGE``.

Each prints a table and then every figure as one ``name=value`` line; the
figures and the commands that produced them are in BENCHMARKS.md. ``--configs DIR`` (the
``quality`` stage only) benchmarks another folder of recipes than configs/demo.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

from solution.benchmarks import data_cache, data_groups, data_hash, epoch, quality, stack, thresholds, train
from solution.core.cli import user_errors

BENCHES: dict[str, tuple[Callable[[], dict[str, float]], ...]] = {
    "train": (train.run,),
    "epoch": (epoch.run,),
    "data": (data_cache.run, data_hash.run),
    "duplicates": (data_groups.run,),
    "thresholds": (thresholds.run,),
    "stack": (stack.run,),
    "quality": (quality.run,),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark a stage of the kit; prints name=value figures.")
    parser.add_argument("stage", choices=list(BENCHES), help="what to measure")
    parser.add_argument(
        "--quick", action="store_true", help="train only: every row at a CPU size (scripts/gpu_check.sh --dry-run)"
    )
    parser.add_argument(
        "--configs", type=Path, default=None, help="quality only: the folder of YAML recipes (default configs/demo)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.stage != "train":
        parser.error("--quick applies to the train stage only")
    if args.configs is not None and args.stage != "quality":
        parser.error("--configs applies to the quality stage only")
    runs = BENCHES[args.stage]
    if args.quick:
        runs = (partial(train.run, quick=True),)
    if args.configs is not None:
        runs = (partial(quality.run, args.configs),)
    with user_errors():
        figures = {name: value for run in runs for name, value in run().items()}
        print()
        for name, value in figures.items():
            print(f"{name}={value:.4g}")


if __name__ == "__main__":
    main()
