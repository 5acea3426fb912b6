"""Benchmark of the threshold search and the nested estimates.

Random predictions of the real size (31,072 OOF rows x 28 classes, 11,702 test
rows, fixed seed): labels drawn with each class's real prevalence, and
probabilities whose logits move with the label, so the F1 is far from trivial.
The experiments share part of their noise (what every model gets wrong about
an image), so blending them helps, but not without limit.
Every timing is the best of three, and single-threaded (numpy's sort and the
numba loops use one core); the ratios come from one run, so a busy machine moves
the times more than the ratios.
"""

from __future__ import annotations

import time

import numpy as np

from solution.benchmarks import best_seconds
from solution.core.classes import CLASSES
from solution.ensemble import blend, estimates
from solution.scoring import thresholds
from solution.scoring.metrics import f1_per_class

N_OOF, N_TEST, N_EXPERIMENTS, N_FOLDS = 31_072, 11_702, 7, 5
PREVALENCE = np.array([c.train_fraction for c in CLASSES])
GRID = np.linspace(0.0, 1.0, 100)
GRID_CLASSES = (0, 8, 15, 27)  # scikit-learn runs on these (common to rarest) and is scaled to all classes
SEED = 0
TARGETS = {
    "f1_search_vs_sort": "<= 3",
    "f1_search_speedup_vs_grid": ">= 1000",
    "f1_search_minus_grid_macro_f1": ">= 0",
    "nested_10x3_seconds": "< 5",
}


def draw_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.random((n, len(CLASSES))) < PREVALENCE).astype(np.uint8)


def draw_probs(rng: np.random.Generator, labels: np.ndarray, signal: float, shared: np.ndarray) -> np.ndarray:
    """Probabilities whose logit is the class's prior, plus ``signal`` for a positive, plus shared and own noise."""
    logits = np.log(PREVALENCE / (1 - PREVALENCE)) + signal * labels + shared + rng.normal(0.0, 0.9, labels.shape)
    return 1.0 / (1.0 + np.exp(-logits))


def shared_noise(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    return rng.normal(0.0, 1.2, labels.shape)


def sklearn_grid(probs: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """The usual baseline: scikit-learn's f1_score at each grid cut-off; the best F1 of each given class."""
    from sklearn.metrics import f1_score

    return np.array([max(f1_score(labels[:, c], probs[:, c] > t, zero_division=0) for t in GRID) for c in classes])


def search_figures(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The exact per-class search against a plain sort and against the scikit-learn grid search."""
    thresholds.fit(probs, labels)  # numba compiles (or loads its cache) outside the timings
    sort_s = best_seconds(lambda: np.sort(probs, axis=0))
    search_s = best_seconds(lambda: thresholds.fit(probs, labels))
    global_s = best_seconds(lambda: thresholds.global_cutoff(probs, labels))
    grid_s = best_seconds(lambda: sklearn_grid(probs, labels, GRID_CLASSES)) * probs.shape[1] / len(GRID_CLASSES)
    grid_f1 = np.max([f1_per_class(labels, probs > t) for t in GRID], axis=0)  # the grid's F1s, every class at once
    if not np.allclose(grid_f1[list(GRID_CLASSES)], sklearn_grid(probs, labels, GRID_CLASSES)):
        raise AssertionError("the kit's F1 disagrees with scikit-learn's on the grid")
    exact_f1 = thresholds.fit_with_scores(probs, labels)[1]
    return {
        "sort_ms": 1e3 * sort_s,
        "f1_search_ms": 1e3 * search_s,
        "f1_search_vs_sort": search_s / sort_s,
        "global_search_ms": 1e3 * global_s,
        "sklearn_grid_ms": 1e3 * grid_s,
        "f1_search_speedup_vs_grid": grid_s / search_s,
        "f1_search_macro_f1": float(exact_f1.mean()),
        "f1_search_minus_grid_macro_f1": float(exact_f1.mean() - grid_f1.mean()),
    }


def nested_figures(rng: np.random.Generator, labels: np.ndarray) -> dict[str, float]:
    """Seven experiments give ten candidates (each alone, mean, rank mean, hill climb); times every rule."""
    test_labels = draw_labels(rng, N_TEST)
    oof_noise, test_noise = shared_noise(rng, labels), shared_noise(rng, test_labels)
    signals = 2.5 + 0.3 * rng.normal(size=N_EXPERIMENTS)  # some experiments better than others
    oofs = [draw_probs(rng, labels, s, oof_noise) for s in signals]
    tests = [draw_probs(rng, test_labels, s, test_noise) for s in signals]
    fold = rng.permutation(np.arange(N_OOF) % N_FOLDS)
    start = time.perf_counter()
    candidates = blend.candidates([f"experiment{e}" for e in range(N_EXPERIMENTS)], oofs, tests, labels)
    build_s = time.perf_counter() - start
    rules = tuple(thresholds.RULES)
    nested_s = best_seconds(lambda: estimates.estimate_table(candidates, labels, fold, rules))
    best = estimates.pick_best(estimates.estimate_table(candidates, labels, fold, rules))
    pick = f"{best['candidate']}, {best['rule']}"
    print(f"{len(candidates)} candidates x {len(rules)} rules; best by nested macro-F1: {pick}")
    return {
        "candidates_seconds": build_s,
        "nested_10x3_seconds": nested_s,
        "best_nested_macro_f1": float(best["nested_macro_f1"]),
        "best_in_sample_minus_nested": float(best["in_sample_macro_f1"] - best["nested_macro_f1"]),
    }


def run() -> dict[str, float]:
    """Measure every figure in one run, print a table and one ``name=value`` line per figure."""
    rng = np.random.default_rng(SEED)
    labels = draw_labels(rng, N_OOF)
    figures = search_figures(draw_probs(rng, labels, 2.5, shared_noise(rng, labels)), labels)
    figures |= nested_figures(rng, labels)
    print(f"scikit-learn grid: 100 cut-offs per class, timed on classes {GRID_CLASSES}, scaled to {len(CLASSES)}")
    print(f"{'figure':<32}{'value':>12}  target")
    for name, value in figures.items():
        print(f"{name:<32}{value:>12.4f}  {TARGETS.get(name, '')}")
    for name, value in figures.items():
        print(f"{name}={value:.6g}")
    return figures
