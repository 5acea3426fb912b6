"""Id bookkeeping shared by every reader: comparing two Id sets and aligning rows to an Id order.

Artifacts are joined by Id, never by row position: a reader first checks that
two Id sets are equal (naming both sides and an example when they are not),
then reorders rows with ``positions``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from solution.core.errors import ArtifactError, KitError


def check_same_ids(expected: Sequence[str], got: Sequence[str], expected_name: str, got_name: str) -> None:
    """Refuse two Id sets that differ, naming both sides and an example of the difference."""
    e, g = set(expected), set(got)
    if e == g:
        return
    missing, extra = sorted(e - g), sorted(g - e)
    detail = []
    if missing:
        detail.append(f"{len(missing)} Id(s) of {expected_name} missing from {got_name} (e.g. {missing[0]})")
    if extra:
        detail.append(f"{len(extra)} Id(s) in {got_name} not in {expected_name} (e.g. {extra[0]})")
    raise ArtifactError("Id sets differ: " + "; ".join(detail))


def positions(
    ids: Sequence[str], wanted: Sequence[str], where: str, error: type[KitError] = ArtifactError
) -> np.ndarray:
    """Row positions ``p`` such that ``ids[p[i]] == wanted[i]``; ``where`` names ``ids``' file in errors."""
    row = {image_id: n for n, image_id in enumerate(ids)}
    missing = [image_id for image_id in wanted if image_id not in row]
    if missing:
        raise error(f"{where}: no row for Id {missing[0]!r} ({len(missing)} Id(s) missing)")
    return np.fromiter((row[image_id] for image_id in wanted), dtype=np.int64, count=len(wanted))


def align(df: pd.DataFrame, ids: Sequence[str], where: str) -> pd.DataFrame:
    """Rows of a frame with an ``Id`` column, reordered to ``ids``."""
    return df.iloc[positions(df["Id"].tolist(), ids, where)].reset_index(drop=True)
