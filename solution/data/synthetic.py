"""Synthetic HPA-like dataset written in the exact Kaggle competition layout.

Why: the kit's demo and tests need data that behaves like the Human Protein Atlas
images (four stains, 28 multi-label classes with the real, heavily skewed label
frequencies) without the ~20 GB download.

Labels
    The number of labels per image follows ``LABELS_PER_IMAGE_COUNTS``; the classes are
    then drawn without replacement by an exponential race (a unit wins a slot when its
    ``Exp(1) / weight`` is among the k smallest), with weights calibrated so that the
    marginal class frequencies match the real ``train_fraction``. Endosomes and
    lysosomes form a single sampling unit, so they always co-occur.

Images
    A field of view holds a few elliptical cells, each with a nucleus. Every pixel
    belongs to the cell whose ellipse-normalised radius is smallest, which gives
    touching cells shared borders. From this geometry the reference stains follow:
    blue = textured nuclei with darker nucleoli, red = microtubules radiating from the
    nucleus to the cell edge, yellow = ER haze fading from the nucleus to the cell
    edge. Green, the protein, is the maximum of one pattern per label, each defined by
    *where* it sits relative to the reference stains (nucleus rim, red filament tips,
    cell borders, ...), so, as in the real task, the labels are learnable only from
    spatial relationships. All cells of a field share the labels; the expression level
    varies per cell. A microscope model then applies PSF blur, a smooth uneven
    illumination field, per-channel gain and offset, and shot + read noise before
    quantising to uint8.

    Lengths are in ``unit = size / 64`` pixels, so fields render from 32 to 512 px
    (with more, relatively smaller cells at larger sizes).

Reproducibility
    Labels and Ids come from ``default_rng(seed)`` and image ``i`` from
    ``default_rng((seed, i))``: a seed gives byte-identical files, and one image can be
    re-rendered on its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from solution.core.classes import CLASSES, ENDOSOMES, LABELS_PER_IMAGE_COUNTS, LYSOSOMES, NUM_CLASSES
from solution.core.errors import ConfigError
from solution.core.registry import Interval
from solution.data.layout import STAINS, TEST_LABELS_FILE

log = logging.getLogger(__spec__.name)

MAX_LABELS = len(LABELS_PER_IMAGE_COUNTS)
MIN_SIZE = 32
POSITIVE = Interval(0, low_open=True)  # density, brightness
FRACTION = Interval(0, 1)  # label_noise

_SHIFT = 4  # cv2 drawing takes fixed-point coordinates with this many fractional bits
_FIXED = 1 << _SHIFT
_TAU = 2 * np.pi

# ---------------------------------------------------------------------------- labels

_UNITS: tuple[tuple[int, ...], ...] = tuple((c,) for c in range(NUM_CLASSES) if c not in (ENDOSOMES, LYSOSOMES)) + (
    (ENDOSOMES, LYSOSOMES),
)


def _k_probs() -> np.ndarray:
    counts = np.asarray(LABELS_PER_IMAGE_COUNTS, dtype=float)
    return counts / counts.sum()


def _inclusion(weights: np.ndarray, k: int) -> np.ndarray:
    """Approximate P(unit is drawn) when k units race without replacement.

    Replacing the k-th smallest race time by a fixed threshold t gives
    ``1 - exp(-w t)`` per unit, with t set (by bisection) so the expected count is k.
    """
    lo, hi = 0.0, 1.0
    while np.sum(-np.expm1(-weights * hi)) < k:
        hi *= 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if np.sum(-np.expm1(-weights * mid)) < k:
            lo = mid
        else:
            hi = mid
    return -np.expm1(-weights * hi)


@lru_cache(maxsize=1)
def _unit_weights() -> np.ndarray:
    """Race weights whose marginals match train_fraction (fixed-point iteration)."""
    target = np.array([np.mean([CLASSES[c].train_fraction for c in unit]) for unit in _UNITS])
    k_probs = _k_probs()
    weights = target.copy()
    for _ in range(40):
        marginal = sum(p * _inclusion(weights, k) for k, p in enumerate(k_probs, start=1))
        weights *= target / marginal
    return weights


def _expand(order: np.ndarray, k: int) -> list[int]:
    """Classes of the first k race winners; the pair counts twice, so cap at MAX_LABELS."""
    labels = [c for unit in order[:k] for c in _UNITS[unit]]
    if len(labels) > MAX_LABELS:
        labels = [c for unit in order[: k - 1] for c in _UNITS[unit]]
    return labels


def flip_labels(labels: Sequence[Sequence[int]], fraction: float, rng: np.random.Generator) -> list[list[int]]:
    """Label noise: each label is replaced, with probability ``fraction``, by a class the set does not hold.

    The number of labels per set is kept; ``fraction`` 0 returns the sets unchanged (and draws nothing).
    """
    if fraction == 0:
        return [list(row) for row in labels]
    noisy = []
    for row in labels:
        kept = [c for c in row if rng.uniform() >= fraction]
        free = [c for c in range(NUM_CLASSES) if c not in row]
        new = rng.choice(free, len(row) - len(kept), replace=False)
        noisy.append(sorted(kept + [int(c) for c in new]))
    return noisy


def sample_labels(n: int, rng: np.random.Generator) -> list[list[int]]:
    """Draw n label sets with the real labels-per-image counts and class frequencies."""
    ks = rng.choice(np.arange(1, MAX_LABELS + 1), size=n, p=_k_probs())
    race = rng.exponential(size=(n, len(_UNITS))) / _unit_weights()
    order = np.argsort(race, axis=1)
    return [_expand(row, int(k)) for row, k in zip(order, ks)]


# -------------------------------------------------------------------------- geometry


@dataclass
class _Field:
    """Geometry and clean reference stains of one field of view (images are (S, S))."""

    size: int
    unit: float
    rng: np.random.Generator
    centre: np.ndarray  # (n, 2) cell centres, x y
    axes: np.ndarray  # (n, 2) cell semi-axes
    angle: np.ndarray  # (n,) orientation of cell and nucleus, radians
    nuc_centre: np.ndarray
    nuc_axes: np.ndarray
    cell_id: np.ndarray  # int, -1 outside all cells
    rc: np.ndarray  # radius normalised to the own cell ellipse (1 = cell edge)
    rn: np.ndarray  # radius normalised to the own nucleus ellipse
    inside: np.ndarray  # float 0/1 masks from here on
    nucleus: np.ndarray
    cyto: np.ndarray
    junction: np.ndarray
    nucleoli: np.ndarray = field(init=False)  # (m, 3) x, y, radius
    tips: np.ndarray = field(init=False)  # (m, 2) microtubule plus ends
    red: np.ndarray = field(init=False)  # clean stains in [0, 1], before the microscope
    blue: np.ndarray = field(init=False)
    yellow: np.ndarray = field(init=False)

    @property
    def n(self) -> int:
        return len(self.centre)

    def zeros(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.float32)

    def cell_map(self, values: np.ndarray, outside: float) -> np.ndarray:
        """Per-pixel value of the own cell's entry in ``values``."""
        return np.where(self.cell_id >= 0, values[self.cell_id], outside).astype(np.float32)


def _rotate(ex: np.ndarray, ey: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """Vectors (ex, ey) in an ellipse's own frame, rotated to image x y (stacked last)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([ex * c - ey * s, ex * s + ey * c], axis=-1)


def _to_image(centre: np.ndarray, axes: np.ndarray, angle: float, u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Points at normalised radius u and polar angle theta of an ellipse, as (m, 2) x y."""
    return centre + _rotate(u * axes[0] * np.cos(theta), u * axes[1] * np.sin(theta), angle)


def _radius(size: int, centre: np.ndarray, axes: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(n, S, S) ellipse-normalised radius of every pixel to every ellipse."""
    coords = np.arange(size, dtype=np.float32)
    dx = coords[None, None, :] - centre[:, 0, None, None].astype(np.float32)
    dy = coords[None, :, None] - centre[:, 1, None, None].astype(np.float32)
    c = np.cos(angle).astype(np.float32)[:, None, None]
    s = np.sin(angle).astype(np.float32)[:, None, None]
    u = (dx * c + dy * s) / axes[:, 0, None, None].astype(np.float32)
    v = (dy * c - dx * s) / axes[:, 1, None, None].astype(np.float32)
    return np.sqrt(u * u + v * v)


def _layout(size: int, rng: np.random.Generator, density: float = 1.0) -> tuple[np.ndarray, ...]:
    """Cells on a jittered grid, sized so that neighbours often touch; ``density`` scales the cell count."""
    n = max(2, round(int(rng.integers(3, 7)) * density * np.sqrt(size / 64)))
    grid = int(np.ceil(np.sqrt(n)))
    spacing = size / grid
    slots = rng.choice(grid * grid, n, replace=False)
    centre = (np.stack([slots % grid, slots // grid], 1) + 0.5 + rng.uniform(-0.15, 0.15, (n, 2))) * spacing
    major = spacing * rng.uniform(0.55, 0.7, n)
    axes = np.stack([major, major * rng.uniform(0.65, 0.95, n)], 1)
    angle = rng.uniform(0, np.pi, n)
    nuc_axes = axes * rng.uniform(0.38, 0.46, (n, 1)) * rng.uniform(0.9, 1.1, (n, 2))
    offset = rng.uniform(-0.08, 0.08, (n, 2)) * axes
    nuc_centre = centre + _rotate(offset[:, 0], offset[:, 1], angle)
    return centre, axes, angle, nuc_centre, nuc_axes


def _junctions(cell_id: np.ndarray, unit: float) -> np.ndarray:
    """Pixels of a cell that touch a different cell (min/max filters on the id map)."""
    ids = (cell_id + 1).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    higher = cv2.dilate(ids, kernel) > ids
    lower = cv2.erode(np.where(ids > 0, ids, np.float32(1e9)), kernel) < ids
    border: np.ndarray = ((ids > 0) & (higher | lower)).astype(np.uint8)
    width = int(round(unit))
    if width > 1:
        border = cv2.dilate(border, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))) * (ids > 0)
    return border.astype(np.float32)


def _nucleoli(f: _Field) -> np.ndarray:
    """1-3 nucleoli per nucleus as (m, 3) x, y, radius; they shape blue and two green classes."""
    parts = []
    for i in range(f.n):
        m = int(f.rng.integers(1, 4))
        u, theta = f.rng.uniform(0, 0.55, m), f.rng.uniform(0, _TAU, m)
        xy = _to_image(f.nuc_centre[i], f.nuc_axes[i], f.angle[i], u, theta)
        parts.append(np.hstack([xy, f.nuc_axes[i].min() * f.rng.uniform(0.17, 0.26, (m, 1))]))
    return np.concatenate(parts)


def _build_field(size: int, rng: np.random.Generator, density: float = 1.0) -> _Field:
    centre, axes, angle, nuc_centre, nuc_axes = _layout(size, rng, density)
    rho_cell = _radius(size, centre, axes, angle)
    nearest = np.argmin(rho_cell, axis=0)
    rc = np.take_along_axis(rho_cell, nearest[None], 0)[0]
    rn = np.take_along_axis(_radius(size, nuc_centre, nuc_axes, angle), nearest[None], 0)[0]
    inside = rc < 1
    cell_id = np.where(inside, nearest, -1)
    nucleus = inside & (rn < 1)
    f = _Field(
        size=size,
        unit=size / 64,
        rng=rng,
        centre=centre,
        axes=axes,
        angle=angle,
        nuc_centre=nuc_centre,
        nuc_axes=nuc_axes,
        cell_id=cell_id,
        rc=rc,
        rn=rn,
        inside=inside.astype(np.float32),
        nucleus=nucleus.astype(np.float32),
        cyto=(inside & ~nucleus).astype(np.float32),
        junction=_junctions(cell_id, size / 64),
    )
    f.nucleoli = _nucleoli(f)
    gain = f.cell_map(rng.uniform(0.75, 1.0, f.n), outside=1.0)
    f.red, f.tips = _red(f)
    f.red *= gain
    f.blue = _blue(f) * gain
    f.yellow = _yellow(f) * gain
    return f


# --------------------------------------------------------------------------- drawing


def _fixed(xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(xy) * _FIXED).astype(np.int32)


def _noise(f: _Field, sigma: float) -> np.ndarray:
    """Smooth random texture in [0, 1] with correlation length ~sigma pixels."""
    x = cv2.GaussianBlur(f.rng.standard_normal((f.size, f.size), dtype=np.float32), (0, 0), max(sigma, 0.3))
    return np.clip(0.5 + 0.2 * x / (x.std() + 1e-6), 0, 1)


def _circles(f: _Field, xy: np.ndarray, radius: float | np.ndarray, thickness: int = -1) -> np.ndarray:
    """Filled discs (or rings for thickness > 0) of value 1; radius in pixels."""
    canvas = f.zeros()
    radii = np.broadcast_to(np.asarray(radius, dtype=float), (len(xy),))
    for (x, y), r in zip(_fixed(xy), radii):
        cv2.circle(canvas, (int(x), int(y)), int(round(r * _FIXED)), 1.0, thickness, cv2.LINE_8, _SHIFT)
    return canvas


def _paths(f: _Field, paths: Sequence[np.ndarray], thickness: int = 1) -> np.ndarray:
    """Open polylines of value 1; each path is an (m, 2) array of x y."""
    canvas = f.zeros()
    if paths:
        cv2.polylines(canvas, [_fixed(p) for p in paths], False, 1.0, thickness, cv2.LINE_8, _SHIFT)
    return canvas


def _px(f: _Field, length: float) -> int:
    """A line thickness of ``length`` units, in whole pixels (at least 1)."""
    return max(1, int(round(length * f.unit)))


def _cell_points(f: _Field, count: tuple[int, int], u: tuple[float, float], nucleus: bool = False) -> np.ndarray:
    """count[0]..count[1]-1 random points per cell (or nucleus) at normalised radius in u, as (m, 2)."""
    parts = []
    for i in range(f.n):
        m = int(f.rng.integers(*count))
        centre, axes = (f.nuc_centre[i], f.nuc_axes[i]) if nucleus else (f.centre[i], f.axes[i])
        parts.append(_to_image(centre, axes, f.angle[i], f.rng.uniform(*u, m), f.rng.uniform(0, _TAU, m)))
    return np.concatenate(parts)


def _walks(f: _Field, starts: np.ndarray, steps: int, step: float, turn: float) -> list[np.ndarray]:
    """Random-walk polylines (smoothly turning) from each start point."""
    m = len(starts)
    heading = f.rng.uniform(0, _TAU, (m, 1)) + np.cumsum(f.rng.normal(0, turn, (m, steps)), 1)
    moves = step * np.stack([np.cos(heading), np.sin(heading)], -1)
    return list(np.concatenate([starts[:, None], starts[:, None] + np.cumsum(moves, 1)], 1))


# ------------------------------------------------------------------ reference stains


def _red(f: _Field) -> tuple[np.ndarray, np.ndarray]:
    """Microtubules: slightly curved filaments from the nucleus to the cell edge."""
    paths: list[np.ndarray] = []
    tips = []
    for i in range(f.n):
        m = int(f.rng.integers(10, 16))
        theta = f.rng.uniform(0, _TAU, m)
        bend = f.rng.normal(0, 0.25, m)
        u = np.stack([np.full(m, 0.3), np.full(m, 0.62), f.rng.uniform(0.85, 1.0, m)], 1)
        pts = _to_image(f.centre[i], f.axes[i], f.angle[i], u, theta[:, None] + bend[:, None] * np.arange(3))
        paths.extend(pts)
        tips.append(pts[:, -1])
    lines = _paths(f, paths, _px(f, 0.8)) * (0.6 + 0.4 * _noise(f, 2 * f.unit))
    red = np.maximum(lines * f.inside * (1 - 0.6 * f.nucleus), 0.12 * f.cyto)
    return red, np.concatenate(tips)


def _blue(f: _Field) -> np.ndarray:
    """DAPI: textured nuclei, darker at the nucleoli."""
    nucleoli = _circles(f, f.nucleoli[:, :2], f.nucleoli[:, 2])
    return f.nucleus * (0.55 + 0.45 * _noise(f, 0.9 * f.unit)) * (1 - 0.35 * nucleoli)


def _yellow(f: _Field) -> np.ndarray:
    """ER: reticular haze, brightest around the nucleus and fading to the cell edge."""
    haze = np.clip((1 - f.rc) / 0.55, 0, 1) ** 0.8
    return haze * (0.45 + 0.55 * _noise(f, 0.7 * f.unit)) * (f.cyto + 0.3 * f.nucleus)


# ------------------------------------------------------------------- green patterns


def _nucleoplasm(f: _Field) -> np.ndarray:
    return f.nucleus * (0.6 + 0.4 * _noise(f, f.unit))


def _nuclear_membrane(f: _Field) -> np.ndarray:
    return f.inside * np.exp(-(((f.rn - 0.93) / 0.13) ** 2))


def _nucleoli_pattern(f: _Field) -> np.ndarray:
    return _circles(f, f.nucleoli[:, :2], f.nucleoli[:, 2]) * f.nucleus


def _fibrillar_center(f: _Field) -> np.ndarray:
    """Tiny dots clustered in and around the nucleoli."""
    reps = f.rng.integers(2, 5, len(f.nucleoli))
    base = np.repeat(f.nucleoli, reps, axis=0)
    r = base[:, 2] * 1.2 * np.sqrt(f.rng.uniform(0, 1, len(base)))
    phi = f.rng.uniform(0, _TAU, len(base))
    xy = base[:, :2] + np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    return _circles(f, xy, 0.45 * f.unit) * f.inside


def _speckles(f: _Field) -> np.ndarray:
    """Many small patches: the top quarter of a fine texture within the nucleus."""
    texture = _noise(f, 0.55 * f.unit)
    values = texture[f.nucleus > 0]
    cut = np.quantile(values, 0.75) if values.size else 1.0
    return f.nucleus * (texture > cut) * (0.6 + 0.4 * texture)


def _nuclear_bodies(f: _Field) -> np.ndarray:
    return _circles(f, _cell_points(f, (1, 5), (0, 0.75), nucleus=True), 0.55 * f.unit) * f.nucleus


def _er(f: _Field) -> np.ndarray:
    return f.yellow


def _golgi(f: _Field) -> np.ndarray:
    """A thick crescent hugging the nucleus on one side."""
    canvas = f.zeros()
    for i in range(f.n):
        start = float(f.rng.uniform(0, 360))
        end = start + float(f.rng.uniform(60, 110))
        centre = tuple(map(int, _fixed(f.nuc_centre[i])))
        axes = tuple(map(int, _fixed(f.nuc_axes[i] * 1.25)))
        angle = float(np.degrees(f.angle[i]))
        cv2.ellipse(canvas, centre, axes, angle, start, end, 1.0, _px(f, 1.8), cv2.LINE_8, _SHIFT)
    return canvas * (0.6 + 0.4 * _noise(f, f.unit)) * f.inside


def _peroxisomes(f: _Field) -> np.ndarray:
    return 0.85 * _circles(f, _cell_points(f, (12, 20), (0.55, 0.92)), 0.45 * f.unit) * f.cyto


def _endosomes(f: _Field) -> np.ndarray:
    return _circles(f, _cell_points(f, (6, 10), (0.55, 0.92)), 0.9 * f.unit) * f.cyto


def _lysosomes(f: _Field) -> np.ndarray:
    return _circles(f, _cell_points(f, (4, 8), (0.5, 0.72)), 1.3 * f.unit) * f.cyto


def _intermediate_filaments(f: _Field) -> np.ndarray:
    """Long, curvy filaments forming a loose cage around the nucleus."""
    starts = _cell_points(f, (4, 7), (0.5, 0.8))
    step = 0.12 * float(f.axes.mean())
    return _paths(f, _walks(f, starts, 8, step, 0.35)) * f.inside * (1 - 0.7 * f.nucleus)


def _actin(f: _Field) -> np.ndarray:
    """Straight parallel stress fibres, one orientation per cell, clipped to the cell."""
    canvas = f.zeros()
    for i in range(f.n):
        psi = f.angle[i] + f.rng.normal(0, 0.3)
        direction, normal = np.array([np.cos(psi), np.sin(psi)]), np.array([-np.sin(psi), np.cos(psi)])
        reach = f.axes[i, 0]
        offsets = np.arange(-reach, reach, 2.2 * f.unit) + f.rng.uniform(0, 2.2 * f.unit)
        mids = f.centre[i] + offsets[:, None] * normal
        lines = list(np.stack([mids - reach * direction, mids + reach * direction], 1))
        canvas += _paths(f, lines, _px(f, 0.7)) * (f.cell_id == i)
    return canvas * (0.65 + 0.35 * _noise(f, 1.5 * f.unit))


def _focal_adhesions(f: _Field) -> np.ndarray:
    """Short radial dashes just inside the cell edge."""
    paths: list[np.ndarray] = []
    for i in range(f.n):
        m = int(f.rng.integers(8, 15))
        theta = f.rng.uniform(0, _TAU, m)
        u = np.stack([np.full(m, 0.8), np.full(m, 0.96)], 1)
        paths.extend(_to_image(f.centre[i], f.axes[i], f.angle[i], u, theta[:, None]))
    return _paths(f, paths, _px(f, 1.0)) * f.inside


def _microtubules(f: _Field) -> np.ndarray:
    return f.red


def _microtubule_ends(f: _Field) -> np.ndarray:
    return _circles(f, f.tips, 0.6 * f.unit) * f.inside


def _cytokinetic_bridge(f: _Field) -> np.ndarray:
    """A short bright bar, with a midbody dot, between the two closest cells."""
    dist = np.linalg.norm(f.centre[:, None] - f.centre[None], axis=-1) + np.eye(f.n) * 1e9
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    mid, gap = (f.centre[i] + f.centre[j]) / 2, (f.centre[j] - f.centre[i]) * 0.2
    bar = _paths(f, [np.stack([mid - gap, mid + gap])], _px(f, 1.2))
    return np.maximum(bar, _circles(f, mid[None], 1.1 * f.unit))


def _mitotic_spindle(f: _Field) -> np.ndarray:
    """Bowed fibres between two poles across one (rounded) cell's nucleus."""
    i = int(f.rng.integers(f.n))
    psi = f.rng.uniform(0, _TAU)
    direction, normal = np.array([np.cos(psi), np.sin(psi)]), np.array([-np.sin(psi), np.cos(psi)])
    half = 1.1 * f.nuc_axes[i].max()
    poles = f.nuc_centre[i] + np.array([-half, half])[:, None] * direction
    bows = f.nuc_centre[i] + np.linspace(-0.45, 0.45, 5)[:, None] * half * normal
    fibres = _paths(f, [np.stack([poles[0], bow, poles[1]]) for bow in bows], _px(f, 0.8))
    return np.maximum(fibres, _circles(f, poles, 1.0 * f.unit))


def _next_to_nucleus(f: _Field) -> np.ndarray:
    """One point per cell just outside the nucleus, on a random side."""
    return _cell_points(f, (1, 2), (1.25, 1.3), nucleus=True)


def _mtoc(f: _Field) -> np.ndarray:
    """One larger dot with a dim aster-like halo beside the nucleus."""
    xy = _next_to_nucleus(f)
    return np.maximum(_circles(f, xy, 1.1 * f.unit), 0.35 * _circles(f, xy, 2.6 * f.unit)) * f.inside


def _centrosome(f: _Field) -> np.ndarray:
    """A pair of pinpoint dots beside the nucleus."""
    xy = _next_to_nucleus(f)
    phi = f.rng.uniform(0, _TAU, len(xy))
    partner = xy + 1.4 * f.unit * np.stack([np.cos(phi), np.sin(phi)], 1)
    return _circles(f, np.vstack([xy, partner]), 0.5 * f.unit) * f.inside


def _lipid_droplets(f: _Field) -> np.ndarray:
    xy = _cell_points(f, (2, 5), (0.55, 0.85))
    return _circles(f, xy, f.rng.uniform(1.5, 2.2, len(xy)) * f.unit, _px(f, 0.7)) * f.cyto


def _plasma_membrane(f: _Field) -> np.ndarray:
    return np.maximum(f.inside * np.exp(-(((f.rc - 0.94) / 0.07) ** 2)), 0.8 * f.junction)


def _cell_junctions(f: _Field) -> np.ndarray:
    return f.junction


def _mitochondria(f: _Field) -> np.ndarray:
    """Many short, bent tubules in the cytoplasm."""
    starts = _cell_points(f, (10, 17), (0.5, 0.88))
    return 0.85 * _paths(f, _walks(f, starts, 2, 1.3 * f.unit, 0.6)) * f.cyto


def _aggresome(f: _Field) -> np.ndarray:
    xy = _cell_points(f, (1, 2), (1.5, 1.6), nucleus=True)
    return _circles(f, xy, 0.6 * f.nuc_axes.min(1)) * f.inside


def _cytosol(f: _Field) -> np.ndarray:
    return f.cyto * (0.5 + 0.15 * _noise(f, 2 * f.unit)) + 0.08 * f.nucleus


def _cytoplasmic_bodies(f: _Field) -> np.ndarray:
    return _circles(f, _cell_points(f, (1, 4), (0.55, 0.88)), 1.6 * f.unit) * f.cyto


def _rods_rings(f: _Field) -> np.ndarray:
    """One or two small rods or rings per cell."""
    xy = _cell_points(f, (1, 3), (0.55, 0.85))
    is_rod = f.rng.uniform(size=len(xy)) < 0.5
    phi = f.rng.uniform(0, _TAU, len(xy))
    half = 1.5 * f.unit * np.stack([np.cos(phi), np.sin(phi)], 1)
    rods = _paths(f, [np.stack([p - h, p + h]) for p, h in zip(xy[is_rod], half[is_rod])], _px(f, 0.8))
    rings = _circles(f, xy[~is_rod], 1.2 * f.unit, _px(f, 0.6))
    return np.maximum(rods, rings) * f.cyto


_PATTERNS: tuple[Callable[[_Field], np.ndarray], ...] = (
    _nucleoplasm, _nuclear_membrane, _nucleoli_pattern, _fibrillar_center, _speckles,
    _nuclear_bodies, _er, _golgi, _peroxisomes, _endosomes, _lysosomes,
    _intermediate_filaments, _actin, _focal_adhesions, _microtubules, _microtubule_ends,
    _cytokinetic_bridge, _mitotic_spindle, _mtoc, _centrosome, _lipid_droplets,
    _plasma_membrane, _cell_junctions, _mitochondria, _aggresome, _cytosol,
    _cytoplasmic_bodies, _rods_rings,
)  # fmt: skip
assert len(_PATTERNS) == NUM_CLASSES


def _green(f: _Field, labels: Sequence[int]) -> np.ndarray:
    green = 0.04 * f.inside
    for label in sorted(set(labels)):
        green = np.maximum(green, f.rng.uniform(0.75, 1.0) * _PATTERNS[label](f))
    return green * f.cell_map(f.rng.uniform(0.55, 1.0, f.n), outside=0.8)


# ------------------------------------------------------------------------ microscope


def _microscope(clean: np.ndarray, unit: float, rng: np.random.Generator, brightness: float = 1.0) -> np.ndarray:
    """PSF blur, uneven illumination, per-channel gain (times ``brightness``) and offset, shot + read noise, uint8."""
    size = clean.shape[0]
    image = cv2.GaussianBlur(clean, (0, 0), max(0.5, 0.55 * unit))
    coarse = rng.uniform(0.65, 1.0, (3, 3)).astype(np.float32)
    illumination = np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0.6, 1.0)
    image = image * illumination[..., None] * (rng.uniform(0.6, 1.0, 4) * brightness).astype(np.float32)
    image += rng.uniform(0.01, 0.04, 4).astype(np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.sqrt(0.003 * image + 0.0002)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def render_field(
    labels: Sequence[int], size: int, rng: np.random.Generator, density: float = 1.0, brightness: float = 1.0
) -> np.ndarray:
    """One field of view for ``labels``: (size, size, 4) uint8, stains red, green, blue, yellow.

    ``density`` scales the number of cells in the field and ``brightness`` the microscope's gain (signal
    against the fixed read noise and offset); 1.0 and 1.0 are the demo's fields.
    """
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE}, got {size}")
    if any(not 0 <= label < NUM_CLASSES for label in labels):
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, got {list(labels)}")
    f = _build_field(size, rng, density)
    clean = np.stack([f.red, _green(f, labels), f.blue, f.yellow], axis=-1).astype(np.float32)
    return _microscope(clean, f.unit, rng, brightness)


# --------------------------------------------------------------------------- writing


def _make_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Distinct UUID-1-shaped Ids, like the competition's."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids[str(uuid.UUID(int=int.from_bytes(rng.bytes(16), "big"), version=1))] = None
    return list(ids)


def _write_csv(path: Path, header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> None:
    lines = [",".join(header)] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _write_pngs(folder: Path, image_id: str, image: np.ndarray) -> None:
    for channel, stain in enumerate(STAINS):
        path = folder / f"{image_id}_{stain}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., channel])):
            raise OSError(f"could not write {path}")


OWN_MARK = ".synthetic-own"  # inside <out>.partial and <out>.old while the generator owns them


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _check_ours(path: Path) -> None:
    """Refuse to remove a folder beside the output that the generator did not make: it may be the user's."""
    if (path.exists() or path.is_symlink()) and not (path.is_dir() and (path / OWN_MARK).is_file()):
        raise ConfigError(
            f"{path} exists and was not made by the generator (no {OWN_MARK} inside); it would be deleted: "
            "move it away or choose another output folder"
        )


def _check_output(out: Path, force: bool) -> None:
    """The output may be replaced whole (``force``), so it must not be the current folder or one holding it."""
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise ConfigError(f"{out} is the current folder or holds it, and the output is replaced whole: name a new one")
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it")


def _swap_in(partial: Path, out: Path) -> None:
    """Move the finished dataset into place; an old one is moved aside (marked as the generator's) first, so a
    crash at any point leaves either the old or the new dataset under ``out``'s name or beside it."""
    if out.exists() or out.is_symlink():
        old = out.with_name(out.name + ".old")
        if old.exists() or old.is_symlink():
            _remove(old)
        os.replace(out, old)
        if old.is_dir() and not old.is_symlink():
            (old / OWN_MARK).touch()
        os.replace(partial, out)
        _remove(old)
    else:
        os.replace(partial, out)
    (out / OWN_MARK).unlink()


def generate(
    out_dir: Path | str,
    n_train: int = 1200,
    n_test: int = 400,
    size: int = 64,
    seed: int = 0,
    force: bool = False,
    *,
    density: float = 1.0,
    brightness: float = 1.0,
    label_noise: float = 0.0,
) -> Path:
    """Write a synthetic dataset in the Kaggle HPA layout to ``out_dir`` and return its path.

    Generator settings (the defaults write the demo's data, byte for byte):

    - ``density`` (> 0): scales the number of cells per field (``render_field``).
    - ``brightness`` (> 0): scales the microscope's gain, so below 1 the stains sit closer to the offset
      and read noise (``render_field``).
    - ``label_noise`` (0..1): each label of ``train.csv`` is replaced with this probability by a class
      its image does not show (``flip_labels``, from its own random stream); the images are rendered from
      the true labels and ``test_labels.csv`` keeps them.

    Everything is written to ``<out_dir>.partial`` (holding the mark ``OWN_MARK`` from its first moment) and
    renamed into place at the end, so an interrupted run never leaves a half-written ``out_dir``. A
    ``.partial`` or ``.old`` folder beside it without the mark is the user's: refused, never deleted.
    """
    if n_train < 1 or n_test < 1 or seed < 0 or size < MIN_SIZE:
        raise ConfigError(
            f"need --n-train >= 1, --n-test >= 1, --seed >= 0, --size >= {MIN_SIZE}; "
            f"got {n_train}, {n_test}, {seed}, {size}"
        )
    POSITIVE.check("density", density)
    POSITIVE.check("brightness", brightness)
    FRACTION.check("label_noise", label_noise)
    out = Path(os.path.abspath(out_dir))  # '.' and 'a/..' get a name to put .partial beside
    _check_output(out, force)
    partial = out.with_name(out.name + ".partial")
    for beside in (partial, out.with_name(out.name + ".old")):
        _check_ours(beside)
    if partial.exists():
        _remove(partial)
    partial.mkdir(parents=True)
    (partial / OWN_MARK).touch()
    (partial / "train").mkdir()
    (partial / "test").mkdir()

    rng = np.random.default_rng(seed)
    labels = sample_labels(n_train + n_test, rng)
    ids = _make_ids(n_train + n_test, rng)
    for index, (image_id, image_labels) in enumerate(zip(ids, labels)):
        image = render_field(image_labels, size, np.random.default_rng((seed, index)), density, brightness)
        _write_pngs(partial / ("train" if index < n_train else "test"), image_id, image)

    noise_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    written = flip_labels(labels[:n_train], label_noise, noise_rng) + labels[n_train:]
    targets = [(image_id, " ".join(map(str, image_labels))) for image_id, image_labels in zip(ids, written)]
    _write_csv(partial / "train.csv", ("Id", "Target"), targets[:n_train])
    _write_csv(partial / TEST_LABELS_FILE, ("Id", "Target"), targets[n_train:])
    blank = [(image_id, "0") for image_id, _ in targets[n_train:]]
    _write_csv(partial / "sample_submission.csv", ("Id", "Predicted"), blank)
    _swap_in(partial, out)
    return Path(out_dir)
