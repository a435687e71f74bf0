"""Evaluation under torchrun: ``torchrun --nproc_per_node=N -m cirbench run ...`` (multi-node with torchrun's
rendezvous as usual).

Each rank takes its shard of the images (as ``--shard K/N`` would), runs on ``cuda:LOCAL_RANK`` when CUDA is
present (gloo on CPU otherwise), and writes its own run folder ``OUT/ranks/rankK-of-N``; after a barrier
rank 0 merges them into ``OUT``. Rerunning the same command resumes every rank's folder and merges again.
Shards split by image, so the merged records are those of a single-process run (timings aside).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import ConfigError
from ..files import FolderLock
from .merge import merge_runs
from .runner import RunSummary, run_protocol

__all__ = ["Context", "setup", "run", "teardown"]


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    device: str = "cpu"
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _device(requested: str, local_rank: int | None) -> str:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested}: CUDA is not available here; use --device cpu")
    if requested == "cuda" and local_rank is not None:
        return f"cuda:{local_rank}"
    return requested


def setup(requested_device: str, shard: str | None) -> Context:
    """The process's place in a torchrun group (world 1 outside torchrun) and its device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=_device(requested_device, None))
    if shard:
        raise ConfigError("--shard and torchrun both split the images: use one of them")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(requested_device, local_rank)
    owns = not dist.is_initialized()
    if owns:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        # Ranks wait for the slowest at the end: a day, not gloo's default 30 minutes.
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(hours=24))
    return Context(dist.get_rank(), dist.get_world_size(), device, owns)


def rank_folder(out: Path, ctx: Context) -> Path:
    return out / "ranks" / f"rank{ctx.rank}-of-{ctx.world}"


def run(protocol, models: dict, out: Path, ctx: Context, **kwargs) -> RunSummary:
    """:func:`run_protocol` for this rank, then (rank 0) the merge into ``out``."""
    if ctx.world == 1:
        return run_protocol(protocol, models, out, device=ctx.device, **kwargs)
    with FolderLock(out, "torchrun run") if ctx.main else contextlib.nullcontext():
        summary = run_protocol(protocol, models, rank_folder(out, ctx), shard=(ctx.rank, ctx.world),
                               device=ctx.device, **kwargs)
        dist.barrier()
        if ctx.main:
            ranks = [out / "ranks" / f"rank{r}-of-{ctx.world}" for r in range(ctx.world)]
            n = merge_runs(ranks, out, replace=True, lock_out=False)
            print(f"merged {n} records of {ctx.world} ranks into {out}", file=sys.stderr)
        dist.barrier()
    summary.out_dir = out
    return summary


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
