"""The submission CSV: ``python -m solution.make_submission [--source NAME] [--rule RULE] [--submit]``.

Scores every candidate (experiments, blends, the stack) under every threshold
rule with nested estimates, picks the best nested figure unless told, prints
what it picked and why, writes ``submissions/<source>.csv`` and its ``.json``
sidecar (with ``--twins transfer`` also ``<source>.twins.csv`` and ``.twins.json``),
and with ``--submit`` uploads it (the twins file, with ``--twins``) through the
``kaggle`` package. See ``solution.ensemble.submission``, ``solution.ensemble.twins``
and ``solution.ensemble.upload``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.core.registry import FRACTION, NON_NEGATIVE, Interval
from solution.core.tables import read_class_rates
from solution.ensemble.submission import check_pair, write_submission
from solution.ensemble.twins import TWIN_RULES
from solution.ensemble.upload import COMPETITION, submit
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
    p.add_argument(
        "--submit", action="store_true", help="upload to Kaggle with the kaggle package (with --twins: the twins file)"
    )
    p.add_argument("--dry-run", action="store_true", help="with --submit: say what would be sent, send nothing")
    p.add_argument("-m", "--message", default=None, help="Kaggle submission message (default: source, rule, nested F1)")
    p.add_argument("--competition", default=COMPETITION, help="Kaggle competition slug")
    return p


def report(summary: dict, out: Path) -> None:
    top = sorted(summary["estimates"], key=lambda r: -r["nested_macro_f1"])[:8]
    heading = f"{'candidate':<20}{'rule':<13}{'in-sample':>11}{'nested':>9}"
    log.info(f"{heading}   (OOF macro-F1; the best 8 of {len(summary['estimates'])})")
    for r in top:
        log.info(f"{r['candidate']:<20}{r['rule']:<13}{r['in_sample_macro_f1']:>11.4f}{r['nested_macro_f1']:>9.4f}")
    log.info(
        f"picked {summary['source']} with rule {summary['rule']} ({summary['why']}): nested macro-F1 "
        f"{summary['nested_macro_f1']:.4f}, in-sample {summary['oof_macro_f1']:.4f}"
    )
    log.info(
        f"submission: {out} ({summary['test_images']} images, {summary['mean_labels_per_test_image']:.2f} labels per "
        f"image; training images carry {summary['mean_labels_per_train_image']:.2f})"
    )
    if "test_macro_f1" in summary:
        log.info(
            f"synthetic test macro-F1 (hidden labels): {summary['test_macro_f1']:.4f}  (predicting the most "
            f"frequent class for every image: {summary['test_macro_f1_most_frequent_class']:.4f})"
        )
    if summary["average_test_twins"]:
        averaged = summary["average_test_twins"]
        log.info(f"averaged the probabilities of {averaged['images']} test images in {averaged['groups']} groups")
    if "twins" in summary:
        report_twins(summary["twins"])


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
    args = parser().parse_args(argv)
    with user_errors():
        options = thresholds.RuleOptions(
            shrink=args.shrink,
            global_below=args.global_below,
            at_least_one=args.at_least_one,
            prior_rates=None if args.prior_rates is None else read_class_rates(args.prior_rates),
            bag=args.bag or 0,
        )
        summary, out = write_submission(
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
        report(summary, out)
        if args.submit:
            if args.twins:
                out = Path(summary["twins"]["file"])
                log.info(f"uploading the twins submission {out} (--twins {args.twins}), not the plain one")
            check_pair(out)
            message = (
                args.message
                or f"{summary['source']} {summary['rule']}: nested OOF macro-F1 {summary['nested_macro_f1']:.4f}"
            )
            log.info(submit(out, message, args.competition, args.dry_run))


if __name__ == "__main__":
    main()
