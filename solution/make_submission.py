"""The submission CSV: ``python -m solution.make_submission [--source stack|EXPERIMENT] [--out PATH] [--submit]``.

See ``solution.submission``: cut-offs fitted on the source's OOF predictions,
applied to its test predictions, validated, with a JSON sidecar; ``--submit``
uploads the file with the Kaggle command-line client.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.cli import add_data_args, add_oof_arg, user_errors
from solution.submission import check_pair, default_source, upload, write_submission

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write the submission CSV from stacked or single-experiment predictions."
    )
    parser.add_argument(
        "--source", default=None, help="'stack' (default when present) or an experiment name under oof/"
    )
    parser.add_argument("--out", type=Path, default=None, help="submission path (default: submissions/<source>.csv)")
    add_oof_arg(parser)
    add_data_args(parser)
    parser.add_argument("--submit", action="store_true", help="upload to Kaggle with the kaggle client")
    parser.add_argument(
        "--message", default=None, help="Kaggle submission message (default: the source and OOF macro-F1)"
    )
    args = parser.parse_args(argv)
    with user_errors():
        source = args.source or default_source(args.oof_dir)
        out = args.out or Path("submissions") / f"{source}.csv"
        summary = write_submission(source, out, args.oof_dir, args.folds_dir, args.data)
        labels_per_image = summary["mean_labels_per_test_image"]
        log.info(f"submission: {out} ({summary['test_images']} images, {labels_per_image:.2f} labels per image)")
        log.info(f"OOF macro-F1 of {source} with per-class cut-offs (fitted in-sample): {summary['oof_macro_f1']:.4f}")
        if "test_macro_f1" in summary:
            log.info(
                f"synthetic test macro-F1 (hidden labels): {summary['test_macro_f1']:.4f}  (predicting the most "
                f"frequent class for every image: {summary['test_macro_f1_most_frequent_class']:.4f})"
            )
        if args.submit:
            check_pair(out)
            log.info(upload(out, args.message or f"{source}: OOF macro-F1 {summary['oof_macro_f1']:.4f}"))


if __name__ == "__main__":
    main()
