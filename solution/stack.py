"""LightGBM stacker over the OOF probabilities of all experiments: ``python -m solution.stack``.

The written stack is ``--blend`` x LightGBM + (1 - ``--blend``) x the plain mean
(default 0.5): with a few thousand OOF rows the trees are noisy, and averaging
them with the mean they correct was steadier on the demo than either alone
(see the printed table; ``--blend 1`` writes the pure LightGBM stack). Writes
``oof/stack/`` in the same format as an experiment and prints the OOF macro-F1
of each experiment, their plain mean, the LightGBM stack and the written blend.
See ``solution.stacking`` for the model.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from solution import thresholds
from solution.cli import add_data_args, add_oof_arg, user_errors
from solution.errors import ArtifactError
from solution.fileio import run_info
from solution.metrics import macro_f1
from solution.predictions import STACK_NAME, list_experiments, load_aligned, probs_frame, write_predictions
from solution.stacking import FEATURE_SETS, LGB_PARAMS, MIN_POSITIVES, stack

log = logging.getLogger(__spec__.name)


def score_row(name: str, probs: np.ndarray, labels: np.ndarray) -> str:
    return f"{name:<28}{macro_f1(labels, probs > 0.5):>10.4f}{thresholds.fitted_macro_f1(probs, labels):>12.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stack the OOF predictions of all experiments with LightGBM.")
    parser.add_argument(
        "--experiments", nargs="*", default=None, help="names under oof/ (default: all with a manifest)"
    )
    add_oof_arg(parser)
    add_data_args(parser)
    parser.add_argument("--features", choices=list(FEATURE_SETS), default="class", help="see solution.stacking")
    parser.add_argument(
        "--blend", type=float, default=0.5, help="weight of LightGBM against the plain mean (1: LightGBM)"
    )
    parser.add_argument("--min-positives", type=int, default=MIN_POSITIVES, help="fewer: the class keeps the mean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads (more only help on idle cores)")
    args = parser.parse_args(argv)
    if not 0 <= args.blend <= 1:
        parser.error(f"--blend must be within [0, 1], got {args.blend}")
    with user_errors():
        names = args.experiments or list_experiments(args.oof_dir)
        if not names:
            raise ArtifactError(f"no experiments in {args.oof_dir}/: run scripts/train_folds.sh first")
        loaded = load_aligned(names, args.oof_dir, args.folds_dir, args.data)
        preds, labels, folds, dataset = loaded.preds, loaded.labels, loaded.folds, loaded.dataset
        oof_probs = np.stack([p.oof_probs for p in preds])
        test_probs = np.stack([p.test_probs for p in preds])
        stacked = stack(
            oof_probs, labels, folds.fold, test_probs, args.features, args.seed, args.n_jobs, args.min_positives
        )
        mean_oof, mean_test = oof_probs.mean(axis=0), test_probs.mean(axis=0)
        oof = args.blend * stacked.oof + (1 - args.blend) * mean_oof
        test = args.blend * stacked.test + (1 - args.blend) * mean_test
        manifest = {
            "experiment": STACK_NAME,
            "inputs": names,
            "folds_hash": folds.hash,
            "n_folds": folds.n_folds,
            "data_dir": str(dataset.root.resolve()),
            "features": args.features,
            "lightgbm_params": LGB_PARAMS,
            "blend": args.blend,
            "seed": args.seed,
            "classes_kept_at_the_mean": stacked.fallback,
            **run_info(),
        }
        out = args.oof_dir / STACK_NAME
        write_predictions(out, probs_frame(folds.ids, oof), probs_frame(dataset.test_ids, test), manifest)

        rows = [score_row(p.name, p.oof_probs, labels) for p in preds]
        if len(preds) > 1:
            rows.append(score_row("mean of experiments", mean_oof, labels))
        rows += [
            score_row("LightGBM stack", stacked.oof, labels),
            score_row(f"stack written ({args.blend:g} LightGBM)", oof, labels),
        ]
        log.info(
            f"\nOOF macro-F1 ({len(labels)} images, {folds.n_folds} folds; "
            "'fitted' = per-class cut-offs fitted on these OOF rows)"
        )
        log.info(f"{'predictions':<28}{'@0.5':>10}{'fitted':>12}")
        log.info("\n".join(rows))
        if stacked.fallback:
            log.info(
                f"classes with fewer than {args.min_positives} positive OOF rows keep the plain mean: "
                f"{', '.join(map(str, stacked.fallback))}"
            )
        log.info(f"wrote {out}/oof.parquet, test.parquet, manifest.json")


if __name__ == "__main__":
    main()
