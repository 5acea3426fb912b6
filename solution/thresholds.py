"""Print one prediction set's fitted per-class cut-offs and F1: ``python -m solution.thresholds --source NAME``."""

from __future__ import annotations

import argparse
import logging

from solution.artifacts.oof import load_aligned
from solution.core.classes import CLASS_NAMES, NUM_CLASSES
from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.scoring.thresholds import fit_with_scores

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="stack", help="experiment name under oof/, or 'stack'")
    add_oof_arg(parser)
    add_data_args(parser)
    args = parser.parse_args(argv)
    with user_errors():
        loaded = load_aligned([args.source], args.oof_dir, args.folds_dir, args.data)
        labels = loaded.labels
        cutoffs, scores = fit_with_scores(loaded.preds[0].oof_probs, labels)
        for c in range(NUM_CLASSES):
            positives = int(labels[:, c].sum())
            log.info(f"{c:>2} {CLASS_NAMES[c]:<32} cut-off {cutoffs[c]:.4f}  F1 {scores[c]:.3f}  positives {positives}")
        log.info(f"OOF macro-F1 with these cut-offs (fitted in-sample): {scores.mean():.4f}")


if __name__ == "__main__":
    main()
