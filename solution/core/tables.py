"""The kit's two-column CSVs (``Id,Target`` labels, ``Id,Predicted`` submissions, ``class,rate`` target
rates): read and checked.

Files are UTF-8 (a BOM is allowed) with the exact header; no Id (or class) repeats or is empty; labels are
ASCII digits 0..27, each at most once per row. Ids such as ``NA`` or ``null`` stay Ids. Every problem is a
``DatasetError`` naming the file and line (a field beyond csv's limit included), quoting a few hundred
characters at most.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from solution.core.classes import NUM_CLASSES
from solution.core.errors import DatasetError, quote


def parse_target(text: str, where: str) -> list[int]:
    """Labels of one ``Target`` cell; ``where`` (file:row) names it in errors."""
    tokens = text.split()
    if not tokens:
        raise DatasetError(f"{where}: empty Target (every image needs at least one label)")
    labels = []
    for tok in tokens:
        if not (tok.isascii() and tok.isdigit()) or int(tok) >= NUM_CLASSES:
            raise DatasetError(
                f"{where}: bad label {quote(tok)} in Target {quote(text)}; expected integers 0..{NUM_CLASSES - 1}"
            )
        labels.append(int(tok))
    if len(set(labels)) != len(labels):
        raise DatasetError(f"{where}: repeated label in Target {quote(text)}")
    return labels


def read_rows(path: Path, header: tuple[str, str]) -> list[tuple[int, str, str]]:
    """(line number, first, second) of each data row of a two-column CSV with the given header."""
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                return _rows(path, reader, header)
            except csv.Error as exc:  # a field over csv's limit (128 KiB), a NUL byte, ...
                raise DatasetError(f"{path}:{reader.line_num}: not a CSV row of {','.join(header)} ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _rows(path: Path, reader, header: tuple[str, str]) -> list[tuple[int, str, str]]:
    head = next(reader, None)
    if head is None or tuple(h.strip() for h in head) != header:
        raise DatasetError(f"{path}: expected header {','.join(header)}, got {quote(','.join(head or []))}")
    rows: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != 2:
            raise DatasetError(f"{path}:{line}: expected 2 columns ({','.join(header)}), got {len(row)}: {quote(row)}")
        key = row[0].strip()
        if not key:
            raise DatasetError(f"{path}:{line}: empty {header[0]}")
        if key in seen:
            raise DatasetError(f"{path}:{line}: duplicate {header[0]} {quote(key)} (first on line {seen[key]})")
        seen[key] = line
        rows.append((line, key, row[1].strip()))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def read_labels_csv(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Ids and their (N, 28) uint8 label matrix from an ``Id,Target`` file."""
    path = Path(path)
    rows = read_rows(path, ("Id", "Target"))
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.uint8)
    for i, (line, _, target) in enumerate(rows):
        labels[i, parse_target(target, f"{path}:{line}")] = 1
    return [r[1] for r in rows], labels


def read_sample_submission(path: Path | str) -> list[str]:
    return [r[1] for r in read_rows(Path(path), ("Id", "Predicted"))]


def read_class_rates(path: Path | str) -> tuple[float, ...]:
    """The rate of each of the 28 classes, in class order, from a ``class,rate`` file (one row per class, any
    order; rates in [0, 1]): a target positive rate per class, such as the public leaderboard's class ratios."""
    path = Path(path)
    rates: dict[int, float] = {}
    for line, key, text in read_rows(path, ("class", "rate")):
        if not (key.isascii() and key.isdigit()) or int(key) >= NUM_CLASSES:
            raise DatasetError(f"{path}:{line}: bad class {key!r}; expected an integer 0..{NUM_CLASSES - 1}")
        try:
            rate = float(text)
        except ValueError:
            rate = math.nan
        if not 0.0 <= rate <= 1.0:
            raise DatasetError(f"{path}:{line}: rate {text!r} of class {key} is not a number in [0, 1]")
        rates[int(key)] = rate
    missing = sorted(set(range(NUM_CLASSES)) - rates.keys())
    if missing:
        raise DatasetError(f"{path}: no rate for class {missing[0]} (needs one row per class 0..{NUM_CLASSES - 1})")
    return tuple(rates[c] for c in range(NUM_CLASSES))
