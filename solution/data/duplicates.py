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

The hash alone cannot make groups: chance pairs grow with the square of the image count, and groups joined
through chains of them grow without bound (BENCHMARKS.md, "Duplicates: chains"). So a pair is a *twin* only when
it passes a second, independent check: the normalised correlation, in the best of the eight orientations, of
the two images' DCT coefficients in the band the hash leaves out (frequencies ``BLOCK``..``CHECK_BLOCK - 1`` of
the 32x32 thumbnail), stain by stain (each weighted as in step 2), at least ``DEFAULT_MIN_CORRELATION``. The hash
looks at the low frequencies of the stains' sum, the check at higher ones of each stain, so a chance agreement of
one says nothing of the other, while a copy agrees in both. The coefficients of the band are an orthonormal
transform of the band-limited thumbnail, so their dot product is the correlation of the band-limited images,
and orientations act on them as on the hash's (sign flips, a transpose).

Groups are complete-linkage clusters of the twins, strongest first: two groups merge only when every member
of one is a twin of every member of the other, so a group is a clique of twins and never grows through a
chain of pairs. A twin pair that the linkage keeps in two groups is counted in the summary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numba
import numpy as np

from solution.core.errors import DatasetError
from solution.data.cache import find_cache, load_images
from solution.data.layout import Dataset, open_dataset, open_train_only

log = logging.getLogger(__spec__.name)

THUMB = 32
BLOCK = 8
CHECK_BLOCK = 16  # the check's coefficients: those below CHECK_BLOCK in both frequencies, less the hash's BLOCK
STD_FLOOR = 1.0
N_ORIENTATIONS = 8
DEFAULT_MAX_DISTANCE = 8
MAX_DISTANCE_LIMIT = 31  # unrelated hashes differ in 32 bits on average: beyond this nothing is "near"
DEFAULT_MIN_CORRELATION = 0.75  # between chance pairs and edited copies: BENCHMARKS.md, "Duplicates: chains"
BANDS = 4
BAND_BITS = 64 // BANDS
PAIR_CHUNK = 8192  # pairs whose check coefficients are compared at once


# ------------------------------------------------------------------------- hashing


def _dct_rows(n: int, k: int) -> np.ndarray:
    """The first k rows of the orthonormal n-point DCT-II matrix."""
    u = np.arange(k)[:, None]
    rows = np.cos(np.pi * (2 * np.arange(n) + 1) * u / (2 * n)) * np.sqrt(2 / n)
    rows[0] /= np.sqrt(2)
    return rows.astype(np.float32)


def _flip_signs(k: int) -> np.ndarray:
    """(4, k, k) sign patterns of no flip, left-right (odd v), up-down (odd u) and both on k x k DCT coefficients."""
    u, v = np.arange(k)[:, None], np.arange(k)[None, :]
    return np.stack([(-1.0) ** (up_down * u + left_right * v) for up_down in (0, 1) for left_right in (0, 1)])


_DCT = _dct_rows(THUMB, BLOCK)
_FLIPS = _flip_signs(BLOCK).astype(np.float32)
_CHECK_DCT = _dct_rows(THUMB, CHECK_BLOCK)
_CHECK_U, _CHECK_V = np.nonzero(np.maximum(*np.ogrid[:CHECK_BLOCK, :CHECK_BLOCK]) >= BLOCK)
# Orientation o of the check coefficients: signs[o] * coefficients[..., order[o]], as the hash's orientations
# (the first four flip, the last four transpose, then flip).
_CHECK_INDEX = np.full((CHECK_BLOCK, CHECK_BLOCK), -1)
_CHECK_INDEX[_CHECK_U, _CHECK_V] = np.arange(len(_CHECK_U))
_CHECK_ORDER = np.array([np.arange(len(_CHECK_U))] * 4 + [_CHECK_INDEX[_CHECK_V, _CHECK_U]] * 4)
_CHECK_SIGNS = np.concatenate([_flip_signs(CHECK_BLOCK)[:, _CHECK_U, _CHECK_V]] * 2).astype(np.float32)


def _thumbnail_planes(images: np.ndarray) -> np.ndarray:
    """(n, C, THUMB * THUMB) float32 area-averaged thumbnail of each stain (averaged in float, not rounded)."""
    thumbs = np.stack(
        [cv2.resize(im.astype(np.float32), (THUMB, THUMB), interpolation=cv2.INTER_AREA) for im in images]
    )
    return np.ascontiguousarray(thumbs.reshape(len(images), THUMB * THUMB, -1).transpose(0, 2, 1))


def _low_frequencies(planes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, BLOCK, BLOCK) low-frequency DCT coefficients of the standardised stain sum, DC set to 0.

    A stain's mean only moves the DC coefficient, so centring the sum once centres every stain;
    it also keeps float32 rounding small, so that a flipped image gets exactly the flipped hash.
    """
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


def _check_coefficients(planes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, C * K) float16 unit vectors: each stain's DCT coefficients of the check's band, weighted as in the hash.

    An image without any content in the band (a blank one) gets zeros, so it is nobody's twin. float16
    (1.5 KB an image) keeps 116,000 images' coefficients in 180 MB; it moves a correlation by about 1e-3.
    """
    coeffs = _CHECK_DCT @ planes.reshape(len(planes), -1, THUMB, THUMB) @ _CHECK_DCT.T
    vectors = (coeffs[:, :, _CHECK_U, _CHECK_V] * weights[:, :, None]).reshape(len(planes), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float16)


@dataclass(frozen=True)
class Fingerprints:
    """Per image: ``hashes`` (N, 8) uint64, the image as given and its flips/rotations; ``check`` (N, C * K)
    float16, the coefficients the second check correlates."""

    hashes: np.ndarray
    check: np.ndarray

    @staticmethod
    def concatenate(parts: Sequence[Fingerprints]) -> Fingerprints:
        return Fingerprints(np.concatenate([p.hashes for p in parts]), np.concatenate([p.check for p in parts]))


def image_fingerprints(images: np.ndarray, batch: int = 4096) -> Fingerprints:
    """The fingerprints of (N, S, S, C) uint8 images (any S, any C >= 1).

    Works through ``batch`` images at a time, so a memory-mapped cache is read once.
    """
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (N, S, S, C) images, got shape {images.shape}")
    parts = []
    for start in range(0, len(images), batch):
        planes = _thumbnail_planes(images[start : start + batch])
        weights = 1.0 / (planes.std(axis=2) + STD_FLOOR)
        hashes = _orientation_bits(_low_frequencies(planes, weights))
        parts.append(Fingerprints(hashes, _check_coefficients(planes, weights)))
    if not parts:
        check = np.empty((0, images.shape[3] * len(_CHECK_U)), np.float16)
        return Fingerprints(np.empty((0, N_ORIENTATIONS), np.uint64), check)
    return Fingerprints.concatenate(parts)


def stain_correlations(check: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) float32 correlation of each pair (a[p], b[p]) of ``check`` rows, in b's best orientation."""
    n_stains = check.shape[1] // len(_CHECK_U)
    out = np.empty(len(a), np.float32)
    for start in range(0, len(a), PAIR_CHUNK):
        rows = slice(start, start + PAIR_CHUNK)
        first = check[a[rows]].astype(np.float32).reshape(-1, n_stains, len(_CHECK_U))
        second = check[b[rows]].astype(np.float32).reshape(-1, n_stains, len(_CHECK_U))
        best = np.full(len(first), -np.inf, np.float32)
        for order, signs in zip(_CHECK_ORDER, _CHECK_SIGNS):
            best = np.maximum(best, np.einsum("psk,psk->p", first, second[:, :, order] * signs))
        out[rows] = best
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

    ``hashes`` is (N, K) uint64 as ``image_fingerprints`` gives (K orientations; K = 1 compares the
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


def compile_kernels() -> None:
    """Compile the pair search's numba kernels, or load them from numba's cache: setup runs it at install, as
    ``solution.scoring.thresholds.compile_kernels``."""
    find_pairs(np.arange(8, dtype=np.uint64).reshape(4, 2))


def linked_groups(n: int, a: np.ndarray, b: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Group (0, 1, ...) of each of n images by complete linkage of the twin pairs (a, b), strongest first;
    -1 for an image in no group.

    Two groups merge only when every member of one is paired with every member of the other, so every group
    is a clique of pairs and a chain of pairs (x~y, y~z, x and z apart) never joins x to z. Groups are numbered
    in order of their lowest image.
    """
    paired = {(min(i, j), max(i, j)) for i, j in zip(a.tolist(), b.tolist())}
    owner = list(range(n))  # each image's group, named by one member
    members: dict[int, list[int]] = {}
    for k in np.argsort(-np.asarray(strength), kind="stable").tolist():
        first, second = owner[int(a[k])], owner[int(b[k])]
        if first == second:
            continue
        left, right = members.get(first, [first]), members.get(second, [second])
        if all((min(x, y), max(x, y)) in paired for x in left for y in right):
            keep, gone = (first, second) if len(left) >= len(right) else (second, first)
            for x in right if keep == first else left:
                owner[x] = keep
            members[keep] = left + right
            members.pop(gone, None)
    groups = np.full(n, -1, dtype=np.int64)
    for number, group in enumerate(sorted(sorted(m) for m in members.values())):
        groups[group] = number
    return groups


# ---------------------------------------------------------------------- command line


@dataclass(frozen=True)
class Images:
    """All images hashed together, in one order: Id, split name, labels (zero rows where unlabelled)."""

    ids: np.ndarray
    splits: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray


def _sources(data: Dataset, extras: Sequence[Dataset]) -> list[tuple[str, Dataset, str]]:
    """(split name, dataset, split) of every image set: train and test of ``data``, train of each extra (named
    by its folder)."""
    found = [("train", data, "train"), ("test", data, "test")] + [(ds.root.name, ds, "train") for ds in extras]
    names = [name for name, _, _ in found]
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise DatasetError(
            f"extra dataset folders must be named apart from each other and from train/test; {clash[0]!r} repeats"
        )
    return found


def _resized(images: np.ndarray, size: int, batch: int) -> Iterator[np.ndarray]:
    """``images`` in batches of ``batch``, each image area-averaged to ``size`` and rounded as the cache does."""
    for start in range(0, len(images), batch):
        part = images[start : start + batch]
        yield np.stack([cv2.resize(np.asarray(im), (size, size), interpolation=cv2.INTER_AREA) for im in part])


def _split_fingerprints(ds: Dataset, split: str, ids: list[str], size: int) -> Fingerprints:
    """The fingerprints of one split's images at ``size``: from a complete cache of that or a larger size (its
    images resized, none decoded again) when there is one, else from the cache at ``size``, built if needed."""
    found = find_cache(ds, split, ids, size)
    if found is None or found[1] == size:
        return image_fingerprints(load_images(ds, split, ids, size) if found is None else found[0])
    images, cached_size = found
    log.info(f"{ds.root} {split}: {len(ids):,} images read from the {cached_size} px cache, resized to {size} px")
    batch = max(1, 2**26 // (cached_size * cached_size * images.shape[3]))  # 64 MB of cached pixels at a time
    return Fingerprints.concatenate([image_fingerprints(part) for part in _resized(images, size, batch)])


def load_fingerprints(data: Dataset, extras: Sequence[Dataset], size: int) -> tuple[Images, Fingerprints]:
    """The images of ``data`` (train, test) and of each extra (train), and their fingerprints."""
    ids, splits, labels, labelled, prints = [], [], [], [], []
    for name, ds, split in _sources(data, extras):
        split_ids = ds.ids_of(split)
        ids += split_ids
        splits += [name] * len(split_ids)
        has_labels = split == "train"
        labels.append(
            ds.train_labels if has_labels else np.zeros((len(split_ids), data.train_labels.shape[1]), np.uint8)
        )
        labelled.append(np.full(len(split_ids), has_labels))
        prints.append(_split_fingerprints(ds, split, split_ids, size))
    images = Images(
        np.array(ids, dtype=object), np.array(splits, dtype=object), np.concatenate(labels), np.concatenate(labelled)
    )
    return images, Fingerprints.concatenate(prints)


@dataclass(frozen=True)
class Duplicates:
    """The pairs within the hash distance (positions ``a``, ``b`` in ``images``, their ``distance`` and
    ``correlation``; ``twin`` where the correlation passed the check) and the groups of twins."""

    images: Images
    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    correlation: np.ndarray
    twin: np.ndarray
    groups: np.ndarray  # (N,) group number of each image, -1 for an image in no group


def twin_pairs(
    prints: Fingerprints, max_distance: int = DEFAULT_MAX_DISTANCE, min_correlation: float = DEFAULT_MIN_CORRELATION
) -> tuple[np.ndarray, ...]:
    """(a, b, distance, correlation, twin, groups): the pairs of ``prints`` within ``max_distance`` bits, each
    checked against ``min_correlation``, and the groups the twins among them make."""
    a, b, distance = find_pairs(prints.hashes, max_distance)
    correlation = stain_correlations(prints.check, a, b)
    twin = correlation >= min_correlation
    groups = linked_groups(len(prints.hashes), a[twin], b[twin], correlation[twin])
    return a, b, distance, correlation, twin, groups


def pair_duplicates(images: Images, prints: Fingerprints, max_distance: int, min_correlation: float) -> Duplicates:
    """The twin pairs and groups of ``prints`` (``twin_pairs``), with the images they stand for."""
    return Duplicates(images, *twin_pairs(prints, max_distance, min_correlation))


def find_duplicates(
    data_dir: Path, extra_dirs: Sequence[Path], size: int, max_distance: int, min_correlation: float
) -> Duplicates:
    """Hash, pair, check and group the images of a dataset (train and test) and of its extra datasets."""
    images, prints = load_fingerprints(open_dataset(data_dir), [open_train_only(d) for d in extra_dirs], size)
    return pair_duplicates(images, prints, max_distance, min_correlation)


def _group_counts(images: Images, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: its size, whether it holds a test image, whether it holds a labelled one."""
    n_groups = int(groups.max(initial=-1)) + 1
    member = groups >= 0
    has_test, has_labelled = np.zeros(n_groups, bool), np.zeros(n_groups, bool)
    np.logical_or.at(has_test, groups[member], images.splits[member] == "test")
    np.logical_or.at(has_labelled, groups[member], images.labelled[member])
    return np.bincount(groups[member], minlength=n_groups), has_test, has_labelled


def summary(found: Duplicates, max_distance: int, min_correlation: float) -> str:
    """Counts of pairs, of pairs the check rejected, of groups, the largest group, groups that join test images
    to labelled ones, twins the linkage kept apart, and label conflicts among twins."""
    images, groups, twin = found.images, found.groups, found.twin
    sizes, has_test, has_labelled = _group_counts(images, groups)
    a, b = found.a[twin], found.b[twin]
    apart = int(((groups[a] != groups[b]) | (groups[a] < 0)).sum())
    both = images.labelled[a] & images.labelled[b]
    conflicts = both & (images.labels[a] != images.labels[b]).any(axis=1)
    largest = f"{int(sizes.max())} images" if len(sizes) else "none"
    if len(sizes):
        first = int(np.flatnonzero(groups == sizes.argmax())[0])
        largest += f" (group {int(sizes.argmax())}, e.g. {images.splits[first]} image {images.ids[first]})"
    return (
        f"pairs within {max_distance} bits: {len(found.a)}; rejected by the stain check (correlation below "
        f"{min_correlation:g}): {int((~twin).sum())}; twins: {int(twin.sum())}\n"
        f"groups: {len(sizes)} ({int((groups >= 0).sum())} of {len(groups)} images); largest group: {largest}\n"
        f"twins the linkage kept in different groups (each not a twin of every member of the other's group): "
        f"{apart}\n"
        f"groups joining test images to training images: {int((has_test & has_labelled).sum())}\n"
        f"twins among training images: {int(both.sum())}, with different labels: {int(conflicts.sum())}"
    )
