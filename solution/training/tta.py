"""Test-time augmentation modes: each a named set of views of a batch, as ttach's ``aliases.py``.

All views of a batch are stacked into one (V * B, C, H, W) tensor so that one
forward pass predicts them all; the probabilities are then averaged over views.
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


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The batch under each view of ``mode``, stacked: (V * B, C, H, W)."""
    return torch.cat(TTA_MODES[mode](x))
