"""Groups of twins at the competition's size: 31,072 training and 11,702 test fields of view at 32 px.

The fields come from the synthetic renderer (about 75 s on one core, not timed). They share their layout
statistics (cells of similar sizes on a dark background), so their hashes are far from uniform and chance
pairs are many, as on the real images; the former grouping (connected components of every pair) is computed
beside the kit's for comparison. ``N_PLANTED`` training images are copied, each flipped or rotated and then
brightened, resized (to 3/4 of its size and back) or both, half of the copies into test, half into train (with
their source's labels). Reported: pairs, pairs the stain check rejected, the largest group with and without
the check, planted copies in their source's group, the correlations of planted and chance pairs, and how far
apart the folds made with either grouping are.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from solution.artifacts.folds import make_folds
from solution.core.classes import NUM_CLASSES
from solution.data.duplicates import image_fingerprints, twin_pairs
from solution.data.synthetic import render_field, sample_labels

N_TRAIN, N_TEST, SIZE = 31_072, 11_702, 32
N_PLANTED = 600


def rendered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, SIZE, SIZE, 4) uint8 synthetic fields of view and their (n, 28) labels."""
    labels = sample_labels(n, np.random.default_rng(seed))
    images = np.empty((n, SIZE, SIZE, 4), np.uint8)
    matrix = np.zeros((n, NUM_CLASSES), np.uint8)
    for i, image_labels in enumerate(labels):
        images[i] = render_field(image_labels, SIZE, np.random.default_rng((seed, i)))
        matrix[i, image_labels] = 1
    return images, matrix


def edited(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flipped or rotated copy, then brightened, resized to 3/4 and back, or both."""
    copy = np.rot90(image, k=int(rng.integers(4)))
    copy = np.ascontiguousarray(copy[:, ::-1] if rng.random() < 0.5 else copy)
    kind = rng.integers(3)
    if kind != 1:
        copy = np.clip(copy * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
    if kind != 0:
        small = cv2.resize(copy, (SIZE * 3 // 4, SIZE * 3 // 4), interpolation=cv2.INTER_AREA)
        copy = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return copy


def plant(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overwrite the last N_PLANTED / 2 images of train and of test with copies of training images 0, 1, ...;
    returns (N_PLANTED, 2) rows (source, copy)."""
    half = N_PLANTED // 2
    copies = np.concatenate([np.arange(N_TRAIN - half, N_TRAIN), np.arange(len(images) - half, len(images))])
    for source, copy in enumerate(copies):
        images[copy] = edited(images[source], rng)
        labels[copy] = labels[source]
    return np.stack([np.arange(N_PLANTED), copies], axis=1)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of the pair graph (the former grouping), -1 for an image without a pair."""
    _, component = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    return np.where(np.bincount(component)[component] > 1, component, -1)


def imbalance_percent(labels: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    """How far (%) the largest of 5 folds made with ``groups`` exceeds the smallest, and the fold sizes."""
    sizes = np.bincount(make_folds(labels, 5, 42, groups))
    return 100.0 * (sizes.max() / sizes.min() - 1), sizes


def run() -> dict[str, float]:
    images, labels = rendered(N_TRAIN + N_TEST, seed=7)
    planted = plant(images, labels, np.random.default_rng(1))
    start = time.perf_counter()
    a, b, _, correlation, twin, groups = twin_pairs(image_fingerprints(images))
    seconds = time.perf_counter() - start
    largest = int(np.bincount(groups[groups >= 0]).max(initial=0))
    found = np.mean([groups[s] >= 0 and groups[s] == groups[c] for s, c in planted])
    is_planted = np.isin(a * len(images) + b, planted[:, 0] * len(images) + planted[:, 1])
    chained = components(len(images), a, b)
    imbalance, sizes = imbalance_percent(labels[:N_TRAIN], groups[:N_TRAIN])
    chained_imbalance, chained_sizes = imbalance_percent(labels[:N_TRAIN], chained[:N_TRAIN])
    print(f"{len(images):,} images: {len(a)} pairs, {int(twin.sum())} twins; fold sizes {' '.join(map(str, sizes))}")
    print(f"without the check: fold sizes {' '.join(map(str, chained_sizes))}")
    return {
        "groups_pairs": float(len(a)),
        "groups_rejected_by_check": float((~twin).sum()),
        "groups_largest_without_check": float(np.bincount(chained[chained >= 0]).max()),
        "groups_largest": float(largest),
        "groups_largest_percent": 100.0 * largest / len(images),
        "groups_planted_found": float(found),
        "groups_planted_min_correlation": float(correlation[is_planted].min()),
        "groups_chance_max_correlation": float(correlation[~is_planted].max()),
        "groups_fold_imbalance_percent": imbalance,
        "groups_fold_imbalance_without_check_percent": chained_imbalance,
        "groups_seconds": seconds,
    }
