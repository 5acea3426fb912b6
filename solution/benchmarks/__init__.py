"""Benchmarks, one module per stage, each with ``run() -> dict[str, float]``; ``python -m solution.bench <stage>`` runs one."""
