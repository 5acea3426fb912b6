"""Stochastic weight averaging: the mean of the weights of a fold's last ``swa`` epochs (pudae's 3rd place
averaged the last 10), then BatchNorm statistics recomputed for the averaged weights on training batches.

The averaged weights are what the EMA's are to a plain run: validated, saved as the fold's checkpoint and
used to predict. Their state (with the count of epochs averaged) is saved in ``last.pt``, so a killed run
resumes and ends as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn


def averaged_model(model: nn.Module) -> AveragedModel:
    """An equal-weights running average of ``model``'s parameters (buffers are recomputed, not averaged)."""
    return AveragedModel(model, use_buffers=False)


def averages_epoch(epoch: int, epochs: int, swa: int) -> bool:
    """Whether the weights after epoch ``epoch`` (counted from 1) of ``epochs`` join an average of the last
    ``swa``."""
    return swa > 0 and epoch > epochs - swa


def recompute_batchnorm(
    average: AveragedModel,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> None:
    """Reset and recompute the BatchNorm running statistics of ``average`` over one pass of ``batches`` (the
    loader's uint8 stains, turned into model input by ``transform``, with ``crop`` their centre windows, as the
    model predicts them): averaged weights need their own."""

    def inputs() -> Iterator[torch.Tensor]:
        for stains, _ in batches:
            yield transform(stains.to(device, non_blocking=True))

    with torch.no_grad():
        update_bn(inputs(), average, device)
