"""Benchmarks, one module per stage, each with ``run() -> dict[str, float]``.

``python -m solution.bench STAGE`` runs one and prints its figures as name=value lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], repeats: int = 3, warm_up: bool = False) -> float:
    """Best wall-clock seconds of ``repeats`` calls of ``fn``, after one uncounted call with ``warm_up``."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
