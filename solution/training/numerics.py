"""How a model's arithmetic runs on its device: the ``precision`` key (autocast, gradient scaler) and the layout.

``precision: auto`` is bf16 autocast on a GPU that has bf16 natively (compute capability 8.0 and above: A100,
H100, L4, RTX 30xx and later), fp16 autocast with a gradient scaler below that (Kaggle's T4 and P100, V100s),
and fp32 on the CPU; it is resolved on each device that trains or predicts, and the choice is logged and
recorded in the fold's ``metrics.json``. An explicit value is used as it is, on every device (on the CPU through
torch's CPU autocast), except bf16 on a GPU without it natively, which is refused. The model and its input are
channels-last (cuDNN and the CPU's oneDNN both convolve faster so), and on CUDA cuDNN picks its convolution
kernels by timing them (``autotune_convolutions``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from solution.core.errors import ConfigError
from solution.core.registry import Registry

log = logging.getLogger(__spec__.name)

PRECISIONS: Registry[str] = Registry(
    "precision",
    {
        "auto": "bf16 on a GPU of compute capability 8.0 or above, fp16 with a gradient scaler below, fp32 on CPU",
        "bf16": "bfloat16 autocast (a GPU of compute capability 8.0 or above, or the CPU)",
        "fp16": "float16 autocast with a gradient scaler (torch.amp.GradScaler)",
        "fp32": "no autocast",
    },
)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16 = (8, 0)  # the first compute capability with bf16 tensor cores (Ampere)


@dataclass(frozen=True)
class Numerics:
    """A resolved precision (``bf16``, ``fp16`` or ``fp32``) on a device, and the memory layout there."""

    precision: str
    device: torch.device
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a forward pass runs in: autocast to the precision's dtype (nothing for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16 only (disabled, it passes losses and steps through unchanged)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")


# Where convolutions run faster on channels-last tensors: cuDNN's tensor cores, and oneDNN's CPU kernels
# (BENCHMARKS.md, "Where a CPU epoch goes").
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def autotune_convolutions(device: torch.device) -> None:
    """On CUDA, cuDNN times its convolution kernels at each new input shape and keeps the fastest
    (``cudnn.benchmark``: the kit's shapes are fixed, one image size and full training batches); elsewhere
    nothing. The kernels it picks may differ from run to run: GPU runs are not bit-reproducible anyway."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_numerics(name: str, device: torch.device) -> Numerics:
    """The precision ``name`` of ``PRECISIONS`` on ``device``, with its layout (channels-last on CUDA and CPU); logged.

    ``auto`` as the module says; explicit bf16 on a GPU below compute capability 8.0 is a ``ConfigError``
    (torch would emulate it slowly, or a cuDNN kernel would refuse it mid-run).
    """
    PRECISIONS.check(name)
    cuda = device.type == "cuda"
    capability = torch.cuda.get_device_capability(device) if cuda else None
    native_bf16 = capability is not None and capability >= NATIVE_BF16
    if name == "bf16" and cuda and not native_bf16:
        raise ConfigError(
            f"precision: bf16 needs a GPU of compute capability 8.0 or above; this one has {capability}: "
            "use fp16 (or auto)"
        )
    precision = name if name != "auto" else ("bf16" if native_bf16 else "fp16") if cuda else "fp32"
    where = f"{device} (compute capability {capability})" if cuda else str(device)
    log.info(f"precision {name}: {precision} on {where}")
    return Numerics(precision, device, channels_last=device.type in CHANNELS_LAST_DEVICES)
