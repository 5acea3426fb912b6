"""The submission CSV: ``python -m solution.make_submission [--source NAME] [--rule RULE] [--submit [--wait]]``.

Scores every candidate (experiments, blends, the stack) under every threshold
rule with nested estimates, picks the best nested figure unless told, prints
what it picked and why, writes ``submissions/<source>.csv`` and its ``.json``
sidecar (with ``--twins transfer`` also ``<source>.twins.csv`` and its sidecar),
and with ``--submit`` uploads it (the twins file, with ``--twins``) through the
``kaggle`` client (with ``--wait``, until Kaggle gives its public score).
``--status`` writes nothing new but lists the competition's latest submissions
and their scores. See ``solution.ensemble.submission``, ``solution.ensemble.twins``
and ``solution.ensemble.upload``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.artifacts.submissions import Sidecar, read_sidecar
from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.core.registry import FRACTION, NON_NEGATIVE, POSITIVE, Interval
from solution.core.tables import read_class_rates
from solution.ensemble import upload
from solution.ensemble.submission import write_submission
from solution.ensemble.twins import TWIN_RULES
from solution.scoring import thresholds

log = logging.getLogger(__spec__.name)
GLOBAL_BELOW = 5  # a cut-off fitted on fewer positives mostly fits their noise


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write (and upload) the submission picked by honest OOF estimates.")
    p.add_argument("--source", default=None, help="a candidate: an experiment, mean, rank_mean, hill_climb or stack")
    p.add_argument("--rule", choices=list(thresholds.RULES), default=None, help="threshold rule (default: the best)")
    p.add_argument(
        "--shrink", type=FRACTION.arg_type(), default=0.0, help="pull each cut-off toward the global one (0..1)"
    )
    p.add_argument(
        "--global-below",
        type=NON_NEGATIVE.arg_type(int),
        default=GLOBAL_BELOW,
        help="a class with fewer OOF positives takes the global cut-off",
    )
    p.add_argument(
        "--at-least-one",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="an image with no label above its cut-offs gets its most likely class (HPA images have at least one)",
    )
    p.add_argument(
        "--prior-rates",
        type=Path,
        default=None,
        help="class,rate CSV (28 rows): the prior rule's target rates, e.g. the public leaderboard's class ratios; "
        "scored as the rule variant prior+rates beside prior",
    )
    p.add_argument(
        "--bag",
        type=Interval(1).arg_type(int),
        default=None,
        help="each cut-off the mean over N bootstrap resamples of the OOF rows; scored as the variants RULE+bagN",
    )
    p.add_argument(
        "--twins",
        choices=list(TWIN_RULES),
        default=None,
        help="also write <out>.twins.csv: test images with a labelled twin (folds/duplicates.csv) take its labels",
    )
    p.add_argument(
        "--average-test-twins",
        action="store_true",
        help="average the probabilities of the test images in one duplicate group before the cut-offs",
    )
    p.add_argument("--out", type=Path, default=None, help="submission .csv (default: submissions/<picked source>.csv)")
    add_oof_arg(p)
    add_data_args(p)
    add_kaggle_args(p)
    return p


def add_kaggle_args(p: argparse.ArgumentParser) -> None:
    """The options of the upload (``--submit``) and of the look at its score (``--status``)."""
    kaggle = p.add_mutually_exclusive_group()
    kaggle.add_argument(
        "--submit",
        action="store_true",
        help="upload the submission to Kaggle (the kaggle client; with --twins: the twins file)",
    )
    kaggle.add_argument(
        "--status",
        action="store_true",
        help="write no submission: list the competition's latest submissions with status and public score, and "
        "record the score of the newest uploaded one (or --out's) in its sidecar",
    )
    p.add_argument("--dry-run", action="store_true", help="with --submit: say what would be sent, send nothing")
    p.add_argument("-m", "--message", default=None, help="Kaggle submission message (default: source, rule, nested F1)")
    p.add_argument("--competition", default=upload.COMPETITION, help="Kaggle competition slug")
    p.add_argument(
        "--wait",
        type=POSITIVE.arg_type(),
        nargs="?",
        const=upload.WAIT,
        default=None,
        metavar="SECONDS",
        help=f"with --submit: wait for Kaggle's public score (up to {upload.WAIT:g} s, or SECONDS), print it and "
        "record it in the sidecar",
    )
    p.add_argument(
        "--poll-interval",
        type=POSITIVE.arg_type(),
        default=upload.POLL,
        help="seconds between two looks at the score (--wait)",
    )
    p.add_argument(
        "--timeout",
        type=POSITIVE.arg_type(),
        default=upload.TIMEOUT,
        help="seconds Kaggle has to answer each request (each is sent once)",
    )


def report(sidecar: Sidecar, out: Path) -> None:
    top = sorted(sidecar.estimates, key=lambda r: -r["nested_macro_f1"])[:8]
    heading = f"{'candidate':<20}{'rule':<13}{'in-sample':>11}{'nested':>9}"
    log.info(f"{heading}   (OOF macro-F1; the best 8 of {len(sidecar.estimates)})")
    for r in top:
        log.info(f"{r['candidate']:<20}{r['rule']:<13}{r['in_sample_macro_f1']:>11.4f}{r['nested_macro_f1']:>9.4f}")
    log.info(
        f"picked {sidecar.source} with rule {sidecar.rule} ({sidecar.why}): nested macro-F1 "
        f"{sidecar.nested_macro_f1:.4f}, in-sample {sidecar.oof_macro_f1:.4f}"
    )
    log.info(
        f"submission: {out} ({sidecar.test_images} images, {sidecar.mean_labels_per_test_image:.2f} labels per "
        f"image; training images carry {sidecar.mean_labels_per_train_image:.2f})"
    )
    if sidecar.test_macro_f1 is not None:
        log.info(
            f"synthetic test macro-F1 (hidden labels): {sidecar.test_macro_f1:.4f}  (predicting the most "
            f"frequent class for every image: {sidecar.test_macro_f1_most_frequent_class:.4f})"
        )
    if sidecar.average_test_twins:
        averaged = sidecar.average_test_twins
        log.info(f"averaged the probabilities of {averaged['images']} test images in {averaged['groups']} groups")
    if sidecar.twins:
        report_twins(sidecar.twins)


def report_twins(twins: dict) -> None:
    agreement = twins["oof_label_agreement"]
    log.info(
        f"twins submission: {twins['file']} ({twins['rule']}: {twins['changed_images']} of "
        f"{twins['test_images_with_a_labelled_twin']} test images with a labelled twin changed)"
    )
    log.info(
        f"  on the OOF rows: {twins['oof_images_with_a_twin_in_another_fold_or_extra']} images have a twin in "
        f"another fold or the extra data, "
        + ("" if agreement is None else f"{100 * agreement:.1f} % with the same labels, ")
        + f"nested macro-F1 {twins['oof_nested_macro_f1_plain']:.4f} plain, "
        f"{twins['oof_nested_macro_f1_transferred']:.4f} with their twins' labels"
    )


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.wait is not None and not args.submit:
        p.error("--wait needs --submit")
    with user_errors():
        if args.status:
            upload.status(args.competition, args.timeout, args.out)
            return
        options = thresholds.RuleOptions(
            shrink=args.shrink,
            global_below=args.global_below,
            at_least_one=args.at_least_one,
            prior_rates=None if args.prior_rates is None else read_class_rates(args.prior_rates),
            bag=args.bag or 0,
        )
        sidecar, out = write_submission(
            args.out,
            args.oof_dir,
            args.folds_dir,
            args.data,
            options,
            args.source,
            args.rule,
            args.twins,
            args.average_test_twins,
        )
        report(sidecar, out)
        if args.submit:
            if args.twins and sidecar.twins:
                out = Path(sidecar.twins["file"])
                log.info(f"uploading the twins submission {out} (--twins {args.twins}), not the plain one")
            read_sidecar(out)
            default = f"{sidecar.source} {sidecar.rule}: nested OOF macro-F1 {sidecar.nested_macro_f1:.4f}"
            message = args.message or default
            upload.submit(
                out,
                message,
                args.competition,
                upload.UploadOptions(args.timeout, args.wait, args.poll_interval, args.dry_run),
            )


if __name__ == "__main__":
    main()
