"""Test-time augmentation: named sets of views of a batch, as ttach's ``aliases.py``, and how to merge them.

``tta`` names the flips/rotations (``TTA_MODES``). A model trained on ``crop`` windows predicts on windows
of the whole image: ``tta_crops`` names their places (``CROP_SETS``: 1 the centre, 4 the corners, 5 the
corners and the centre, as bestfitting's 4 crops), each under every view of ``tta``. All views of one
window are written into one (V * B, C, h, w) tensor, in the layout the model predicts in, so that one forward
pass predicts them (one window at a time: the memory of one window's views, whatever ``tta_crops``); the
probabilities of every view of every window are then merged by ``tta_merge`` (``TTA_MERGES``: their mean,
or their max as bestfitting took over 8 views x 4 crops).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from solution.core.registry import Registry
from solution.data.batch import CENTRE, fixed_crop


def _identity(x: torch.Tensor) -> list[torch.Tensor]:
    return [x]


def _hflip(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.flip(-1)]


def _d4(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 dihedral views: 4 rotations, each with and without a horizontal flip."""
    rotations = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return rotations + [r.flip(-1) for r in rotations]


TTA_MODES: Registry[Callable[[torch.Tensor], list[torch.Tensor]]] = Registry(
    "tta",
    {
        "none": _identity,
        "flip": _hflip,
        "d4": _d4,
    },
)


def tta_views(x: torch.Tensor, mode: str, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """The batch under each view of ``mode``, stacked: (V * B, C, H, W), in ``memory_format`` (each view is
    written into it: ``torch.rot90(x, 0)`` is a copy in the default layout, whatever ``x``'s, so a ``torch.cat``
    of the views would come out in that layout)."""
    views = TTA_MODES[mode](x)
    out = torch.empty((len(views) * len(x), *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=memory_format)
    for i, view in enumerate(views):
        out[i * len(x) : (i + 1) * len(x)] = view
    return out


CORNERS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # places as ``fixed_crop`` takes them
# tta_crops -> the windows' places (the config's value is a number; the registry's names are its text)
CROP_SETS: Registry[tuple[tuple[float, float], ...]] = Registry(
    "tta_crops", {"1": (CENTRE,), "4": CORNERS, "5": (*CORNERS, CENTRE)}
)

# tta_merge -> (views, B, K) probabilities -> (B, K)
TTA_MERGES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry(
    "tta_merge", {"mean": lambda probs: probs.mean(0), "max": lambda probs: probs.amax(0)}
)


def crop_windows(x: torch.Tensor, crop: int, crops: int) -> list[torch.Tensor]:
    """The ``crop`` x ``crop`` windows of a (B, C, H, W) batch at the places of ``CROP_SETS[crops]``; crop 0:
    the whole batch, once."""
    if not crop:
        return [x]
    return [fixed_crop(x, crop, at) for at in CROP_SETS[str(crops)]]


def tta_label(mode: str, crops: int, merge: str) -> str:
    """What a fold's predictions were made with, as its record and manifest name it: the mode alone for one
    window averaged (the kit's records before crops), else e.g. ``d4, 5 crops, max``."""
    return ", ".join([mode, *([f"{crops} crops"] if crops != 1 else []), *([merge] if merge != "mean" else [])])
