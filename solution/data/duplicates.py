"""Near-duplicate images: perceptual hashes, pairs within a Hamming distance, groups.

Duplicates must share a fold, or validation scores leak. The hash has 64 bits per image and per flip/rotation:
    1. Each stain is area-averaged to a 32x32 thumbnail, so a 512 px image and its 64 px copy agree.
    2. Each thumbnail stain is centred and divided by its standard deviation (plus ``STD_FLOOR``, so a nearly
       empty stain's noise keeps a small weight) and the four are summed: blind to brightness and contrast,
       also per stain (HPAv18 and competition images were processed differently).
    3. Bit ``8u + v`` is the sign of coefficient (u, v) of the plane's 8x8 lowest 2-D DCT-II frequencies,
       which survive noise, JPEG and resampling (thresholding at zero, not the median, keeps step 4 exact).
    4. The eight flips/rotations act on the DCT without recomputing it (a flip negates odd rows or columns of
       coefficients, a transpose swaps them), so every image gets all eight hashes and two images are as far
       apart as their closest orientations: no pair is lost to noise changing a "canonical" orientation.

``DEFAULT_MAX_DISTANCE`` lies between the distance edits of one image reach and the distance distinct images
keep (BENCHMARKS.md, "Duplicates"); a false pair only ties two images to one fold, a missed one leaks, so the
bound errs high, and every pair's distance is written to tighten it afterwards.

Pair search is multi-index hashing: the bits are cut into ``BANDS`` bands; hashes within d bits agree within
r_k bits in some band k when sum(r_k + 1) = d + 1 (pigeonhole), so each image probes, per band, the sorted
table's buckets within r_k bits of its own, and a numba popcount checks the candidates.

Groups are the connected components of the pair graph.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from solution.core.errors import DatasetError
from solution.data.cache import load_images
from solution.data.layout import Dataset, open_dataset, open_train_only

log = logging.getLogger(__spec__.name)

THUMB = 32
BLOCK = 8
STD_FLOOR = 1.0
N_ORIENTATIONS = 8
DEFAULT_MAX_DISTANCE = 8
MAX_DISTANCE_LIMIT = 31  # unrelated hashes differ in 32 bits on average: beyond this nothing is "near"
BANDS = 4
BAND_BITS = 64 // BANDS


# ------------------------------------------------------------------------- hashing


def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first k rows of the orthonormal n-point DCT-II matrix."""
    u = np.arange(k)[:, None]
    rows = np.cos(np.pi * (2 * np.arange(n) + 1) * u / (2 * n)) * np.sqrt(2 / n)
    rows[0] /= np.sqrt(2)
    return rows.astype(np.float32)


_DCT = _dct_rows(THUMB, BLOCK)
_U, _V = np.arange(BLOCK)[:, None], np.arange(BLOCK)[None, :]
# Sign patterns of no flip, left-right (odd v), up-down (odd u) and both: (4, BLOCK, BLOCK).
_FLIPS = np.stack([(-1.0) ** (up_down * _U + left_right * _V) for up_down in (0, 1) for left_right in (0, 1)])
_FLIPS = _FLIPS.astype(np.float32)


def _thumbnail_planes(images: np.ndarray) -> np.ndarray:
    """(n, C, THUMB * THUMB) float32 area-averaged thumbnail of each stain (averaged in float, not rounded)."""
    thumbs = np.stack(
        [cv2.resize(im.astype(np.float32), (THUMB, THUMB), interpolation=cv2.INTER_AREA) for im in images]
    )
    return np.ascontiguousarray(thumbs.reshape(len(images), THUMB * THUMB, -1).transpose(0, 2, 1))


def _low_frequencies(images: np.ndarray) -> np.ndarray:
    """(n, BLOCK, BLOCK) low-frequency DCT coefficients of the standardised stain sum, DC set to 0.

    A stain's mean only moves the DC coefficient, so centring the sum once centres every stain;
    it also keeps float32 rounding small, so that a flipped image gets exactly the flipped hash.
    """
    planes = _thumbnail_planes(images)
    weights = 1.0 / (planes.std(axis=2) + STD_FLOOR)
    grey = np.einsum("ncp,nc->np", planes, weights)
    grey -= grey.mean(axis=1, keepdims=True)
    coeffs = _DCT @ grey.reshape(-1, THUMB, THUMB) @ _DCT.T
    coeffs[:, 0, 0] = 0.0
    return coeffs


def _orientation_bits(coeffs: np.ndarray) -> np.ndarray:
    """(n, 8) uint64 hashes of the eight flips/rotations, derived from one set of DCT coefficients."""
    oriented = np.concatenate([coeffs[:, None] * _FLIPS, coeffs.transpose(0, 2, 1)[:, None] * _FLIPS], axis=1)
    bits = (oriented > 0).reshape(len(coeffs), N_ORIENTATIONS, BLOCK * BLOCK)
    return np.packbits(bits, axis=2, bitorder="little").view("<u8")[..., 0].astype(np.uint64)


def image_hashes(images: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(N, 8) uint64 perceptual hashes of (N, S, S, C) uint8 images (any S, any C >= 1).

    Column 0 is the image as given, columns 1-7 its flips and rotations.
    Works through ``batch`` images at a time, so a memory-mapped cache is read once.
    """
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (N, S, S, C) images, got shape {images.shape}")
    out = np.empty((len(images), N_ORIENTATIONS), dtype=np.uint64)
    for start in range(0, len(images), batch):
        out[start : start + batch] = _orientation_bits(_low_frequencies(images[start : start + batch]))
    return out


# ---------------------------------------------------------------------- pair search


@numba.njit(cache=True)
def _popcount(x: np.uint64) -> np.uint64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _band_radii(max_distance: int) -> np.ndarray:
    """Per-band search radii r_k with sum(r_k + 1) = max_distance + 1; -1 skips a band."""
    base, extra = divmod(max_distance, BANDS)
    return np.array([base if k <= extra else base - 1 for k in range(BANDS)], dtype=np.int64)


def _probe_masks(radius: int) -> np.ndarray:
    """All BAND_BITS-bit masks with at most ``radius`` bits set, fewest bits first."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(BAND_BITS), r)]
    return np.array(masks, dtype=np.uint64)


@numba.njit(cache=True)
def _search(
    queries: np.ndarray,
    table_hashes: np.ndarray,
    table_owners: np.ndarray,
    offsets: np.ndarray,
    masks: np.ndarray,
    n_masks: np.ndarray,
    max_distance: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query q, owner o > q, distance) hit within ``max_distance``; a pair may repeat."""
    capacity = 1024
    hit_a = np.empty(capacity, np.int64)
    hit_b = np.empty(capacity, np.int64)
    hit_d = np.empty(capacity, np.int64)
    n_hits = 0
    key_mask = np.uint64((1 << BAND_BITS) - 1)
    for q in range(queries.shape[0]):
        h = queries[q]
        for k in range(BANDS):
            key = (h >> np.uint64(k * BAND_BITS)) & key_mask
            for m in range(n_masks[k]):
                bucket = np.int64(key ^ masks[m])
                for e in range(offsets[k, bucket], offsets[k, bucket + 1]):
                    owner = table_owners[k, e]
                    if owner <= q:
                        continue
                    d = np.int64(_popcount(h ^ table_hashes[k, e]))
                    if d > max_distance:
                        continue
                    if n_hits == capacity:
                        capacity *= 2
                        hit_a = np.concatenate((hit_a, np.empty(capacity - n_hits, np.int64)))
                        hit_b = np.concatenate((hit_b, np.empty(capacity - n_hits, np.int64)))
                        hit_d = np.concatenate((hit_d, np.empty(capacity - n_hits, np.int64)))
                    hit_a[n_hits], hit_b[n_hits], hit_d[n_hits] = q, owner, d
                    n_hits += 1
    return hit_a[:n_hits], hit_b[:n_hits], hit_d[:n_hits]


def _band_tables(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every orientation of every image, sorted by each band's key: hashes, owners, bucket offsets."""
    flat = hashes.ravel()
    owners = np.repeat(np.arange(len(hashes), dtype=np.int64), hashes.shape[1])
    n_keys = 1 << BAND_BITS
    table_hashes = np.empty((BANDS, len(flat)), np.uint64)
    table_owners = np.empty((BANDS, len(flat)), np.int64)
    offsets = np.zeros((BANDS, n_keys + 1), np.int64)
    for k in range(BANDS):
        keys = ((flat >> np.uint64(k * BAND_BITS)) & np.uint64(n_keys - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        table_hashes[k], table_owners[k] = flat[order], owners[order]
        offsets[k, 1:] = np.cumsum(np.bincount(keys, minlength=n_keys))
    return table_hashes, table_owners, offsets


def find_pairs(
    hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, distance), i < j, of images whose hashes lie within ``max_distance`` bits.

    ``hashes`` is (N, K) uint64 as from ``image_hashes`` (K orientations; K = 1 compares the
    hashes as they are). The distance of a pair is the smallest over the orientations of j.
    Sorted by i, then j.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if hashes.ndim != 2:
        raise ValueError(f"expected (N, K) hashes, got shape {hashes.shape}")
    if not 0 <= max_distance <= MAX_DISTANCE_LIMIT:
        raise ValueError(f"max_distance must lie in 0..{MAX_DISTANCE_LIMIT}, got {max_distance}")
    radii = _band_radii(max_distance)
    masks = _probe_masks(int(radii.max()))
    n_masks = np.array([sum(math.comb(BAND_BITS, t) for t in range(r + 1)) for r in radii], dtype=np.int64)
    a, b, d = _search(np.ascontiguousarray(hashes[:, 0]), *_band_tables(hashes), masks, n_masks, max_distance)
    order = np.lexsort((d, b, a))
    a, b, d = a[order], b[order], d[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], d[first]


def connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Group (0, 1, ...) of each of n images: connected components of the pairs; -1 for images without a twin."""
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    in_group = np.bincount(component)[component] > 1
    groups = np.full(n, -1, dtype=np.int64)
    groups[in_group] = np.unique(component[in_group], return_inverse=True)[1]
    return groups


# ------------------------------------------------------------------------- folds


# ---------------------------------------------------------------------- command line


@dataclass(frozen=True)
class Images:
    """All images hashed together, in one order: Id, split name, labels (zero rows where unlabelled)."""

    ids: np.ndarray
    splits: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray


def _sources(data: Dataset, extras: Sequence[Dataset]) -> list[tuple[str, Dataset, str]]:
    """(split name, dataset, split) of every image set: train and test of ``data``, train of each extra."""
    sources = [("train", data, "train"), ("test", data, "test")] + [(ds.root.name, ds, "train") for ds in extras]
    names = [name for name, _, _ in sources]
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise DatasetError(
            f"extra dataset folders must be named apart from each other and from train/test; {clash[0]!r} repeats"
        )
    return sources


def load_hashes(data: Dataset, extras: Sequence[Dataset], size: int) -> tuple[Images, np.ndarray]:
    """The images of ``data`` (train, test) and of each extra (train), and their (N, 8) hashes."""
    ids, splits, labels, labelled, hashes = [], [], [], [], []
    for name, ds, split in _sources(data, extras):
        split_ids = ds.train_ids if split == "train" else ds.test_ids
        ids += split_ids
        splits += [name] * len(split_ids)
        has_labels = split == "train"
        labels.append(
            ds.train_labels if has_labels else np.zeros((len(split_ids), data.train_labels.shape[1]), np.uint8)
        )
        labelled.append(np.full(len(split_ids), has_labels))
        hashes.append(image_hashes(load_images(ds, split, split_ids, size)))
    images = Images(
        np.array(ids, dtype=object), np.array(splits, dtype=object), np.concatenate(labels), np.concatenate(labelled)
    )
    return images, np.concatenate(hashes)


def summary(images: Images, a: np.ndarray, b: np.ndarray, groups: np.ndarray, max_distance: int) -> str:
    """Counts of pairs, groups, groups that join test images to labelled ones, and label conflicts."""
    n_groups = int(groups.max(initial=-1)) + 1
    has_test = np.zeros(n_groups, bool)
    has_labelled = np.zeros(n_groups, bool)
    member = groups >= 0
    np.logical_or.at(has_test, groups[member], images.splits[member] == "test")
    np.logical_or.at(has_labelled, groups[member], images.labelled[member])
    both = images.labelled[a] & images.labelled[b]
    conflicts = both & (images.labels[a] != images.labels[b]).any(axis=1)
    return (
        f"pairs within {max_distance} bits: {len(a)}, in {n_groups} groups "
        f"({int(member.sum())} of {len(groups)} images have a twin)\n"
        f"groups joining test images to training images: {int((has_test & has_labelled).sum())}\n"
        f"pairs of training images: {int(both.sum())}, with different labels: {int(conflicts.sum())}"
    )


@dataclass(frozen=True)
class Duplicates:
    """The near-duplicate pairs (positions ``a``, ``b`` in ``images`` and their distance) and the groups."""

    images: Images
    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    groups: np.ndarray  # (N,) group number of each image, -1 for an image without a twin


def find_duplicates(data_dir: Path, extra_dirs: Sequence[Path], size: int, max_distance: int) -> Duplicates:
    """Hash, pair and group the images of a dataset (train and test) and of its extra datasets."""
    images, hashes = load_hashes(open_dataset(data_dir), [open_train_only(d) for d in extra_dirs], size)
    a, b, distance = find_pairs(hashes, max_distance)
    return Duplicates(images, a, b, distance, connected_groups(len(hashes), a, b))
