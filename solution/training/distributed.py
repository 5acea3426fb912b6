"""Multi-process training with torch's own engine: started by ``torchrun``, one process per GPU.

``torchrun --standalone --nproc_per_node N -m solution.train ...`` sets
WORLD_SIZE, RANK and LOCAL_RANK; without them everything runs in one process.
The backend is NCCL on GPUs and gloo on CPUs (which is how the tests run it).
Rank 0 alone writes files, validates and predicts; the others wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from solution.core.errors import ConfigError
from solution.core.registry import Registry


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def agree(self, flag: bool) -> bool:
        """Rank 0's value of ``flag`` on every rank (e.g. rank 0 alone decides to stop early)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())


DEVICES: Registry[str] = Registry(
    "device",
    {
        "auto": "this process's GPU where torch sees one, else the CPU",
        "cpu": "the CPU",
        "cuda": "this process's GPU (an error where torch sees none)",
    },
)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of a name of ``DEVICES``: on a GPU, the ``local_rank``-th of the node (one per process)."""
    DEVICES.check(name)
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no GPU")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"device: process {local_rank} of this node takes GPU {local_rank}, but torch sees "
            f"{torch.cuda.device_count()}: start at most that many processes per node (NPROC_PER_NODE), "
            "or train on the CPU (device: cpu)"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device_name: str) -> Context:
    """The process's rank and device; joins the process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Context(device=device)
    if not dist.is_initialized():
        # Long timeout: the other ranks wait at a barrier while rank 0 predicts a whole fold with TTA.
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=3))
    return Context(rank=dist.get_rank(), world_size=world_size, device=device)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(ctx: Context, total: torch.Tensor, count: int) -> float:
    """The mean of a quantity summed (``total``, a float64 scalar on the context's device) over ``count``
    items on each rank, over all ranks; the one host sync of the sum."""
    if not ctx.distributed:
        return total.item() / max(count, 1)
    t = torch.stack([total, torch.tensor(float(count), dtype=torch.float64, device=ctx.device)])
    dist.all_reduce(t)
    return (t[0] / t[1].clamp(min=1)).item()
