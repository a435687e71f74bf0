"""The one distributed set-up, for evaluation and training: under ``torchrun`` each process joins the group
(gloo on CPU, nccl on CUDA) and takes ``cuda:LOCAL_RANK`` when CUDA is asked for; outside it, world 1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import ConfigError

__all__ = ["Context", "setup", "teardown", "pick_device"]


def pick_device(requested: str, local_rank: int | None = None) -> str:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun ``cuda`` is the rank's GPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ConfigError(f"device {requested!r}: choose auto, cpu, cuda or cuda:N")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r}: CUDA is not available here; use cpu")
    if requested == "cuda" and local_rank is not None:
        return f"cuda:{local_rank}"
    return requested


@dataclass(frozen=True)
class Context:
    """This process's place in the group, and its device."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    owns_group: bool = False  # we called init_process_group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: ranks must stop at the same step or DDP hangs."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def setup(requested_device: str = "auto") -> Context:
    """Join the torchrun group when ``WORLD_SIZE`` > 1 (once per process) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=pick_device(requested_device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    owns = not dist.is_initialized()
    if owns:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        # A day, not gloo's 30 minutes: ranks wait for the slowest at the end of an evaluation, and a training
        # run paused with SIGSTOP (to free the CPU for a benchmark) must survive it.
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(hours=24))
    return Context(dist.get_rank(), dist.get_world_size(), device, owns)


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
