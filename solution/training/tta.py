"""Test-time augmentation modes: each a named set of views of a batch, as ttach's ``aliases.py``.

All views of a batch are written into one (V * B, C, H, W) tensor, in the layout
the model predicts in, so that one forward pass predicts them all; the
probabilities are then averaged over views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from solution.core.registry import Registry


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
