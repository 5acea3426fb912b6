"""A submission's models and recipe as a self-contained folder: ``python -m solution.export --out BUNDLE``.

Writes, whole or not at all, everything ``python -m solution.predict --bundle BUNDLE --data DIR --out FILE.csv``
needs to write the submission again (or label other images) on a machine without the internet and without
``runs/``, ``oof/``, ``folds/`` or ``cache/``: every fold checkpoint of the submission's experiments, their
configs, the blend's or the stack's parts, the cut-offs and the twins step, with a manifest of hashes. See
``solution.artifacts.bundle`` for the layout and ``solution.ensemble.offline`` for the checks.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from solution.core.cli import add_data_args, add_oof_arg, user_errors
from solution.core.workspace import RUNS_DIR
from solution.ensemble.offline import export_bundle

log = logging.getLogger(__spec__.name)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export the current submission's models and recipe as a bundle folder.")
    p.add_argument(
        "--out", type=Path, required=True, help="the bundle folder to write (an existing bundle is replaced)"
    )
    p.add_argument(
        "--submission",
        type=Path,
        default=None,
        help="the submission .csv to export (default: the newest in submissions/, a twins file included)",
    )
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="folder of the fold runs")
    add_oof_arg(p)
    add_data_args(p)
    args = p.parse_args(argv)
    with user_errors():
        manifest, csv = export_bundle(args.out, args.submission, args.oof_dir, args.folds_dir, args.runs_dir, args.data)
        folds = sum(e["n_folds"] for e in manifest.experiments.values())
        log.info(
            f"exported {csv} ({manifest.source}, rule {manifest.rule}: {len(manifest.experiments)} experiments, "
            f"{folds} fold models, {len(manifest.files)} files) to {args.out}"
        )
        log.info(f"offline: python -m solution.predict --bundle {args.out} --data DIR --out submission.csv")


if __name__ == "__main__":
    main()
