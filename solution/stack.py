"""LightGBM stacker over the OOF probabilities of all experiments: ``python -m solution.stack``.

Writes ``oof/stack/`` in the same format as an experiment: ``--blend`` x LightGBM + (1 - ``--blend``) x the
plain mean of the experiments (see ``solution.ensemble.stacking``), and prints the OOF macro-F1 of each
experiment, their mean, the LightGBM stack and the written blend.
"""

from __future__ import annotations

import argparse
import logging

from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.core.registry import FRACTION, NON_NEGATIVE, SEED, Interval
from solution.ensemble.stacking import FEATURE_SETS, StackOptions, stack_experiments

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stack the OOF predictions of all experiments with LightGBM.")
    parser.add_argument(
        "--experiments", nargs="*", default=None, help="names under oof/ (default: all with a manifest)"
    )
    add_oof_arg(parser)
    add_data_args(parser)
    parser.add_argument(
        "--features", choices=list(FEATURE_SETS), default="class", help="see solution.ensemble.stacking"
    )
    parser.add_argument(
        "--blend",
        type=FRACTION.arg_type(),
        default=StackOptions.blend,
        help="weight of LightGBM against the plain mean (1: LightGBM)",
    )
    parser.add_argument(
        "--mean-below",
        type=NON_NEGATIVE.arg_type(int),
        default=StackOptions.mean_below,
        help="a class with fewer positives keeps the mean",
    )
    parser.add_argument("--seed", type=SEED.arg_type(int), default=0)
    parser.add_argument(
        "--n-jobs", type=Interval(1).arg_type(int), default=1, help="LightGBM threads (more only help on idle cores)"
    )
    args = parser.parse_args(argv)
    with user_errors():
        options = StackOptions(args.features, args.blend, args.mean_below, args.seed, args.n_jobs)
        log.info(stack_experiments(args.experiments, args.oof_dir, args.folds_dir, args.data, options))


if __name__ == "__main__":
    main()
