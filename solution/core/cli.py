"""Command-line plumbing shared by the stages: common options, logging, and the one place errors exit.

Every ``main`` runs its work inside ``user_errors()``: a ``KitError`` (a bad
input, named with its file, row or key) exits with its message and status 1,
an ``Interrupted`` (Ctrl-C, where the work says how to resume) with status 130,
never a traceback; any other exception is a bug and keeps its traceback.
Progress and results go through ``logging`` to stdout, from rank 0 only under
torchrun; tqdm draws the progress bars. Modules name their logger
``logging.getLogger(__spec__.name)``: under ``python -m`` their ``__name__`` is
``__main__``, outside the kit's logger, and their messages would be lost. This module imports nothing of the kit
but its errors, so the ``data/`` modules' ``main``s use it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from solution.core import startup
from solution.core.errors import Interrupted, KitError
from solution.core.workspace import FOLDS_DIR, OOF_DIR


class _StdoutHandler(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time (pytest's capture replaces it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(self.format(record) + "\n")
        sys.stdout.flush()


def setup_logging() -> None:
    """Messages of the kit's loggers to stdout, INFO on rank 0 (``RANK`` under torchrun), warnings elsewhere."""
    logger = logging.getLogger("solution")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler())
    logger.setLevel(logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a ``KitError`` (or an ``OSError`` of the machine: disk full, no permission) into
    ``error: <message>`` on stderr and exit status 1, an ``Interrupted`` into its message and status 130 (a
    shell's for Ctrl-C). Entering it ends a command's start: the garbage collector resumes (``core.startup``)."""
    startup.resume()
    setup_logging()
    try:
        yield
    except KitError as exc:
        sys.exit(f"error: {exc}")
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # disk full, a read-only or missing folder: the message names the file
        sys.exit(f"error: {exc.strerror or exc} ({exc.filename or 'no file named'}); nothing was half-written")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Where the folds and the dataset are: every stage after ``folds`` takes these."""
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset directory (default: the one the folds were made from)"
    )
    parser.add_argument("--folds-dir", type=Path, default=FOLDS_DIR, help="folder of folds.csv and folds.json")


def add_oof_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--oof-dir", type=Path, default=OOF_DIR, help="folder of the prediction sets")
