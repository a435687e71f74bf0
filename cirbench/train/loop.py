"""``cirbench train``: PromptCIR's two-stage recipe, resumable, single process or DDP under torchrun.

PromptCIR's authors never released training code; this is cirbench's reconstruction (spec §2). Stage 1
trains on a fixed set of JPEG quality factors, stage 2 fine-tunes with a QF drawn per sample from a range.
**Every default is cirbench's choice, not the paper's** (the paper's hyper-parameters are unknown).

Where things are: the TOML schema in :mod:`cirbench.train.config`, the data in :mod:`cirbench.train.data`,
``log.jsonl`` and ``curves.png`` in :mod:`cirbench.train.log`, validation (through the inference engine) in
:mod:`cirbench.train.validate`. This module holds the schedule, the loss, RNG state, distributed set-up, the
trainer and :func:`train`.

Exactness: the data are a pure function of (seed, step) (see :mod:`cirbench.train.data`) and a checkpoint
holds the model, EMA, optimiser, scheduler, step and every RNG state, so on CPU a run stopped and resumed
logs the same losses, bit for bit, as one that never stopped. Checkpoints hold only tensors, dicts, lists,
ints, floats and strings, so ``torch.load(path, weights_only=True)`` reads them.

Distributed: under ``torchrun --nproc_per_node=N`` every rank takes ``batch_size / N`` samples of each
global batch, DDP averages the gradients, and only rank 0 writes files or logs.

Outputs in ``out_dir``: ``checkpoint_last.pt``, ``final_ema.safetensors`` (at the end, or when
``max_minutes`` runs out), ``log.jsonl``
(step, stage, loss, lr, seconds, val_psnr when validated), ``curves.png`` and ``train_config.json``.
Every one is written atomically (:func:`cirbench.files.atomic_write`), except ``log.jsonl``, which is
appended to and cut back to the checkpoint on resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..archs import build_arch
from ..distributed import Context
from ..errors import ConfigError, RunError
from ..files import FolderLock, atomic_write
from ..zoo.checkpoints import load_into, save_state_dict
from ..zoo.inference import cpu_has_native_bf16
from .config import (
    LossConfig,
    OptimConfig,
    TrainConfig,
    config_to_dict,
    load_config,
    override_steps,
    recipe_changes,
)
from .data import FixedQFs, JpegPatchDataset, QFRange, StepBatchSampler, list_images, seed_worker
from .log import CURVES_NAME, LOG_NAME, append_record, truncate_log, write_curves
from .validate import Validator

__all__ = ["CHECKPOINT_NAME", "FINAL_EMA_NAME", "lr_at", "train"]

CHECKPOINT_NAME = "checkpoint_last.pt"
FINAL_EMA_NAME = "final_ema.safetensors"
CONFIG_JSON_NAME = "train_config.json"
CHECKPOINT_FORMAT = "cirbench-train-checkpoint-v1"
# curves.png is redrawn at every CURVES_EVERY-th checkpoint (by global step, so resumes keep the rhythm) and
# at the end of the run, not at every checkpoint: plotting re-reads the whole log, so its cost grows with the run.
CURVES_EVERY = 5

# ---------------------------------------------------------------------------------------------------------
# Model, schedule, loss
# ---------------------------------------------------------------------------------------------------------
def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _psnr_loss(out: torch.Tensor, target: torch.Tensor, mse_floor: float) -> torch.Tensor:
    """Minus the mean per-sample PSNR (HINet's "PSNR loss"), up to a constant.

    Each sample's gradient is scaled by 1/MSE, so a lightly compressed patch (QF 90, MSE ~1e-4) pulls as
    hard as a QF 10 one: L1 lets the heavy QFs dominate and the model then over-smooths light ones.
    ``mse_floor`` caps one sample's weight (flat patches that are already almost exact).
    """
    mse = ((out - target) ** 2).flatten(1).mean(dim=1)
    return (10.0 / math.log(10.0)) * torch.log(mse + mse_floor).mean()


def _loss_fn(cfg: LossConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    eps2 = cfg.eps**2
    if cfg.type == "l1":
        return F.l1_loss
    if cfg.type == "psnr":
        return lambda out, target: _psnr_loss(out, target, eps2)
    return lambda out, target: torch.sqrt((out - target) ** 2 + eps2).mean()


# ---------------------------------------------------------------------------------------------------------
# RNG state <-> checkpoint-safe values (tensors, lists, ints, floats, strings only)
# ---------------------------------------------------------------------------------------------------------
def _rng_state() -> dict:
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": {"version": version, "state": list(mt), "gauss": [] if gauss is None else [gauss]},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"][0] if py["gauss"] else None))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)



# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def _check_amp(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.runtime.amp and device.type == "cpu" and not cpu_has_native_bf16():
        raise ConfigError(f"{cfg.source}: runtime.amp = true needs a CPU with native bf16 (AVX512-BF16 or AMX); "
                          "this one has none and bf16 would run about 200x slower: set amp = false")


class _Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, ctx: Context, allow_code: bool = False):
        self.cfg, self.out, self.ctx = cfg, out_dir, ctx
        self.device = torch.device(ctx.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _check_amp(cfg, self.device)
        if cfg.data.batch_size % ctx.world:
            raise ConfigError(
                f"{cfg.source}: key 'data.batch_size' ({cfg.data.batch_size}) must be divisible by the "
                f"number of processes ({ctx.world})"
            )
        # The same seed on every rank, so every rank builds the same initial weights.
        _seed_all(cfg.seed)
        model = build_arch(cfg.model.arch, allow_code=allow_code, where=f"{cfg.source} [model] arch",
                           **cfg.model.kwargs)
        if cfg.model.init:
            load_into(model, cfg.model.init)  # a fine-tuning run starts from earlier weights
        multiple = int(getattr(model, "pad_multiple", 1))
        if cfg.data.patch_size % multiple:
            raise ConfigError(f"{cfg.source}: key 'data.patch_size' ({cfg.data.patch_size}) must be a "
                              f"multiple of the model's pad_multiple ({multiple})")
        self.model = model.to(self.device)
        if cfg.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net: nn.Module = self.model
        if ctx.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=tuple(o.betas),
                                           weight_decay=o.weight_decay)
        total = cfg.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_at(s, o, total) / o.lr
        )
        self.loss_fn = _loss_fn(cfg.loss)
        # From here on, ranks differ (any randomness inside the model, e.g. dropout, is per-rank).
        _seed_all(_derive_seed(cfg.seed, 3, ctx.rank))
        self.images = list_images(cfg.data.folders, min_size=cfg.data.patch_size)
        self.step = 0
        self.elapsed = 0.0  # training seconds, summed over resumed runs

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        rng = [_rng_state()]
        if self.ctx.world > 1:  # every rank's RNG, so a DDP resume is exact on every rank
            rng = [None] * self.ctx.world
            dist.all_gather_object(rng, _rng_state())
        if self.ctx.main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "elapsed_s": self.elapsed,
                "config": config_to_dict(self.cfg),
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                # The data's whole state: samples are a function of (seed, step); see train_data.
                "sampler": {"seed": self.cfg.seed, "next_step": self.step,
                            "batch_size": self.cfg.data.batch_size},
            }
            try:
                atomic_write(self.out / CHECKPOINT_NAME, lambda fh: torch.save(state, fh))
            except OSError as exc:
                raise RunError(f"{self.out / CHECKPOINT_NAME}: cannot write the checkpoint ({exc.strerror or exc}); "
                               "the previous one is intact: free space and rerun with --resume") from None
        self.ctx.barrier()

    def load_checkpoint(self) -> None:
        path = self.out / CHECKPOINT_NAME
        if not path.is_file():
            raise RunError(f"--resume: no {CHECKPOINT_NAME} in {self.out}; start without --resume")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise RunError(f"{path}: not a cirbench training checkpoint")
        changed = recipe_changes(ckpt["config"], config_to_dict(self.cfg))
        if changed:
            diffs = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changed)
            raise ConfigError(f"{self.cfg.source}: cannot resume {path} with a different recipe ({diffs})")
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        if len(ckpt["rng"]) == self.ctx.world:
            _set_rng_state(ckpt["rng"][self.ctx.rank])
        elif self.ctx.main:
            warnings.warn(f"{path} was written by {len(ckpt['rng'])} process(es), this run has "
                          f"{self.ctx.world}: RNG states are not restored", stacklevel=2)

    # -- one step --------------------------------------------------------------------------------------
    def _loader(self, stage: int, start: int, stop: int) -> torch.utils.data.DataLoader:
        d = self.cfg.data
        s2 = self.cfg.stage2
        qf = (FixedQFs(tuple(self.cfg.stage1.qfs)) if stage == 1
              else QFRange(s2.qf_min, s2.qf_max, log=s2.qf_sampling == "log-uniform"))
        dataset = JpegPatchDataset(self.images, d.patch_size, qf, d.gray_fraction, self.cfg.seed, d.cache)
        sampler = StepBatchSampler(start, stop, d.batch_size, self.ctx.rank, self.ctx.world)
        # An explicit generator keeps DataLoader's worker base seed from consuming the global torch RNG
        # (which would make a resumed run's RNG drift from an uninterrupted one).
        gen = torch.Generator().manual_seed(_derive_seed(self.cfg.seed, 4, self.ctx.rank, start))
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=d.workers, worker_init_fn=seed_worker,
            generator=gen, pin_memory=self.device.type == "cuda",
        )

    def _train_step(self, inp: torch.Tensor, target: torch.Tensor) -> float:
        dev = self.device
        inp, target = inp.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
        if self.cfg.runtime.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.cfg.runtime.amp):
            out = self.net(inp)
        loss = self.loss_fn(out.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            decay = self.cfg.ema_decay
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p, 1.0 - decay)
            for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                e.copy_(b)
        loss = loss.detach()
        if self.ctx.world > 1:  # log the global-batch loss, not rank 0's share
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss /= self.ctx.world
        return float(loss)

    # -- the run ---------------------------------------------------------------------------------------
    def _prepare_log(self) -> Path:
        log = self.out / LOG_NAME
        if self.ctx.main:
            truncate_log(log, self.step)
        return log

    def run(self, resume: bool, stop_at: int | None, max_seconds: float | None = None) -> dict:
        cfg, ctx = self.cfg, self.ctx
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        if ctx.main:
            _remove_stale_temps(self.out)
        if resume:
            self.load_checkpoint()
        elif (self.out / CHECKPOINT_NAME).exists():
            raise RunError(f"{self.out} already holds a {CHECKPOINT_NAME}: pass --resume or pick another --out")
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            text = json.dumps(config_to_dict(self.cfg), indent=2) + "\n"
            atomic_write(self.out / CONFIG_JSON_NAME, lambda fh: fh.write(text.encode("utf-8")))
        ctx.barrier()
        log_path = self._prepare_log()
        validator = None
        if ctx.main and (cfg.val.dataset or cfg.val.folders):
            validator = Validator(cfg.val, self.device)
        total = cfg.total_steps
        end = total if stop_at is None else min(total, stop_at)
        bar = _progress(total, self.step, disable=not ctx.main)
        stages = [(1, cfg.stage1.steps), (2, total)]  # (stage, its last step)
        last_saved = self.step
        out_of_time = False
        with open(log_path, "a", encoding="utf-8") if ctx.main else contextlib.nullcontext() as log:
            for stage, last in stages:
                if self.step >= min(last, end) or out_of_time:
                    continue
                t0 = time.perf_counter()
                for inp, target in self._loader(stage, self.step, min(last, end)):
                    waited = time.perf_counter() - t0  # for the batch: a loader that keeps up makes this ~0
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss = self._train_step(inp, target)
                    self.step += 1
                    now = time.perf_counter()
                    step_s = now - t0  # data wait included: a stalled loader shows as fewer samples/s
                    self.elapsed += step_s
                    t0 = now
                    record = {"step": self.step, "stage": stage, "loss": loss, "lr": lr,
                              "seconds": round(self.elapsed, 3), "samples": self.step * cfg.data.batch_size,
                              "samples_per_s": round(cfg.data.batch_size / max(step_s, 1e-9), 3),
                              "data_wait_s": round(waited, 4)}
                    due = (cfg.val.every and self.step % cfg.val.every == 0) or self.step == total
                    if validator and due:
                        record.update(validator(self.ema))
                        t0 = time.perf_counter()  # validation time is not training time
                    if ctx.main:
                        append_record(log, record)
                        bar.set_postfix(stage=stage, loss=f"{loss:.4g}", refresh=False)
                        bar.update(1)
                    if self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                        last_saved = self.step
                        if ctx.main and self.step % (cfg.checkpoint_every * CURVES_EVERY) == 0:
                            write_curves(log_path, self.out / CURVES_NAME)
                    if deadline is not None and ctx.any(time.monotonic() > deadline):
                        out_of_time = True
                        break
        bar.close()
        if self.step != last_saved:
            self.save_checkpoint()
        finished = self.step >= total
        if ctx.main:
            write_curves(log_path, self.out / CURVES_NAME)
            if finished or out_of_time:  # a time-boxed run (a lent GPU) brings its weights back either way
                save_state_dict(self.ema.state_dict(), self.out / FINAL_EMA_NAME)
        ctx.barrier()
        return {"step": self.step, "finished": finished, "out_dir": str(self.out), "seconds": self.elapsed}


def _remove_stale_temps(out: Path) -> None:
    """Delete temp files left by a process killed mid-write. They are never read: every output is
    written to a temp file and renamed into place whole."""
    for name in (CHECKPOINT_NAME, FINAL_EMA_NAME, LOG_NAME, CURVES_NAME, CONFIG_JSON_NAME):
        for stale in out.glob(f".{name}.*tmp*"):
            stale.unlink(missing_ok=True)


def _progress(total: int, initial: int, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                disable=disable or not sys.stderr.isatty())


def train(
    config: TrainConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    resume: bool = False,
    *,
    steps_override: int | None = None,
    stop_at: int | None = None,
    max_minutes: float | None = None,
    allow_code: bool = False,
) -> dict:
    """Train from a config (file or :class:`TrainConfig`) into ``out_dir``.

    ``resume`` continues ``out_dir/checkpoint_last.pt`` exactly. ``steps_override`` squeezes the recipe
    into that many steps (:func:`override_steps`). ``stop_at`` stops after that global step with a
    checkpoint, leaving the schedule unchanged (a resumable pause). ``max_minutes`` stops at the first step past
    that much wall time (all ranks at the same step) with a checkpoint and ``final_ema.safetensors``.
    ``allow_code`` lets the config's ``model.arch`` be a ``module:attr`` (user code; a data file alone never
    imports code). Returns {step, finished, out_dir, seconds}.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    if steps_override is not None:
        cfg = override_steps(cfg, steps_override)
    ctx = distributed.setup(cfg.runtime.device)
    try:
        # Rank 0 writes every file: one training per output folder (a second one is refused at once).
        with FolderLock(out_dir, "training") if ctx.main else contextlib.nullcontext():
            return _Trainer(cfg, Path(out_dir), ctx, allow_code).run(
                resume, stop_at, None if max_minutes is None else 60.0 * max_minutes)
    finally:
        distributed.teardown(ctx)
