"""Which epoch's weights a fold keeps: the ``select`` key's registry.

Each entry names the per-epoch validation figure that ranks the epochs and whether lower is better. The
winners chose by validation loss because a fitted macro-F1 swings with the cut-offs of a few rare classes
(bestfitting: "F1 is too sensitive to the threshold"); ``macro_f1`` ranks by the macro-F1 at cut-offs
fitted on the fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solution.core.registry import Registry


@dataclass(frozen=True)
class Selection:
    """An epoch ranking: ``metric`` (a key of the epoch's validation figures), higher better unless ``lower``."""

    metric: str
    lower: bool = False

    def score(self, metrics: dict[str, float]) -> float:
        """The epoch's figure, signed so that a higher score is always a better epoch (NaN: the worst)."""
        value = metrics[self.metric]
        if math.isnan(value):
            return -math.inf
        return -value if self.lower else value


SELECTIONS: Registry[Selection] = Registry(
    "select",
    {
        "val_loss": Selection("val_loss", lower=True),
        "macro_f1": Selection("val_macro_f1_fitted"),
    },
)
