"""Benchmarks, one module per stage, each with ``run() -> dict[str, float]``.

``python -m solution.bench STAGE`` runs one and prints its figures as name=value lines.
"""
