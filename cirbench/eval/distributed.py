"""Evaluation under torchrun: ``torchrun --nproc_per_node=N -m cirbench run ...`` (multi-node with torchrun's
rendezvous as usual).

Each rank (joined by :func:`cirbench.distributed.setup`) takes its shard of the images (as ``--shard K/N`` would),
runs on ``cuda:LOCAL_RANK`` when CUDA is present (gloo on CPU otherwise), and writes its own run folder
``OUT/ranks/rankK-of-N``; after a barrier rank 0 merges them into ``OUT``. Rerunning the same command resumes every
rank's folder and merges again.
Shards split by image, so the merged records are those of a single-process run (timings aside).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..distributed import Context
from ..files import FolderLock
from .merge import merge_runs
from .runner import RunSummary, run_protocol

__all__ = ["run", "rank_folder"]


def rank_folder(out: Path, ctx: Context) -> Path:
    return out / "ranks" / f"rank{ctx.rank}-of-{ctx.world}"


def run(protocol, models: dict, out: Path, ctx: Context, **kwargs) -> RunSummary:
    """:func:`run_protocol` for this rank, then (rank 0) the merge into ``out``."""
    if ctx.world == 1:
        return run_protocol(protocol, models, out, device=ctx.device, **kwargs)
    with FolderLock(out, "torchrun run") if ctx.main else contextlib.nullcontext():
        summary = run_protocol(protocol, models, rank_folder(out, ctx), shard=(ctx.rank, ctx.world),
                               device=ctx.device, **kwargs)
        ctx.barrier()
        if ctx.main:
            ranks = [out / "ranks" / f"rank{r}-of-{ctx.world}" for r in range(ctx.world)]
            n = merge_runs(ranks, out, replace=True, lock_out=False)
            print(f"merged {n} records of {ctx.world} ranks into {out}", file=sys.stderr)
        ctx.barrier()
    summary.out_dir = out
    return summary
