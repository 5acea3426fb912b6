"""Download the HPAv18 external images: ``python -m solution.external --csv LIST --out DIR``.

See ``solution.data.external`` for the layout written, resuming and retries.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.core.cli import user_errors
from solution.core.errors import DatasetError, Interrupted
from solution.data.external import DEFAULT_BASE_URL, DEFAULT_DEADLINE, DEFAULT_MAX_MIB, FAILED_FILE, download

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m solution.external",
        description="Download the HPAv18 external images into the competition layout (train.csv and train/ only).",
    )
    parser.add_argument("--csv", type=Path, required=True, help="Id,Target list, e.g. HPAv18RBGY_wodpl.csv")
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder (rerun to resume)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (area resize)")
    parser.add_argument("--workers", type=int, default=16, help="parallel downloads")
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help="server folder holding {antibody}/{plate}_{well}_{field}_{stain}.jpg",
    )
    parser.add_argument("--retries", type=int, default=3, help="retries of a file after a transient failure")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per socket operation")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds for one attempt at a whole file, from connecting to its last byte",
    )
    parser.add_argument(
        "--max-mib", type=int, default=DEFAULT_MAX_MIB, help="the largest file accepted, in MiB (larger ones fail)"
    )
    args = parser.parse_args(argv)
    for name in ("size", "workers", "timeout", "deadline", "max_mib"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    with user_errors():
        try:
            report = download(
                args.csv,
                args.out,
                args.size,
                args.workers,
                args.base_url,
                args.retries,
                args.timeout,
                deadline=args.deadline,
                max_bytes=args.max_mib << 20,
            )
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; the stains in {args.out} are kept: rerun the same command to fetch the rest"
            ) from None
        log.info(
            f"{len(report.fetched)} images fetched, {len(report.skipped)} already complete, {len(report.failed)} failed"
        )
        for image_id, reason in list(report.failed.items())[:5]:
            log.info(f"  {image_id}: {reason}")
        if report.failed:
            raise DatasetError(
                f"{len(report.failed)} image(s) failed, listed in {args.out / FAILED_FILE}; rerun to retry them"
            )


if __name__ == "__main__":
    main()
