"""The report: ``python -m solution.report [--submission PATH] [--out reports]`` -> ``reports/index.html``.

See ``solution.reporting.page``: per-class F1 of every candidate, cut-offs against
prevalence, training curves, fold prevalence, the candidate x rule estimates
and the submission against the training distribution, as PNG plots and tables
on one page that opens from disk.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.artifacts.submissions import newest_submission
from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.core.workspace import REPORTS_DIR, RUNS_DIR, SUBMISSIONS_DIR
from solution.reporting.page import write_report

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an HTML report of the predictions, folds and submission.")
    add_oof_arg(parser)
    add_data_args(parser)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="folder of the run folders")
    parser.add_argument(
        "--submission",
        type=Path,
        default=None,
        help=f"submission CSV (default: the newest {SUBMISSIONS_DIR}/*.csv with a .json sidecar, if any)",
    )
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help="folder of index.html and its plots")
    args = parser.parse_args(argv)
    with user_errors():
        submission = args.submission or newest_submission(SUBMISSIONS_DIR)
        log.info(f"submission: {submission or 'none'}")
        path = write_report(args.oof_dir, args.folds_dir, args.data, args.runs_dir, submission, args.out)
        log.info(f"report: {path}")


if __name__ == "__main__":
    main()
