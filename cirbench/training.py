"""``cirbench train``: PromptCIR's two-stage recipe, resumable, single process or DDP under torchrun.

PromptCIR's authors never released training code; this is cirbench's reconstruction (spec §2). Stage 1
trains on a fixed set of JPEG quality factors, stage 2 fine-tunes with a QF drawn per sample from a range.
**Every default below is cirbench's choice, not the paper's** (the paper's hyper-parameters are unknown).

Exactness: the data are a pure function of (seed, step) (see :mod:`cirbench.train_data`) and a checkpoint
holds the model, EMA, optimiser, scheduler, step and every RNG state, so on CPU a run stopped and resumed
logs the same losses, bit for bit, as one that never stopped. Checkpoints hold only tensors, dicts, lists,
ints, floats and strings, so ``torch.load(path, weights_only=True)`` reads them.

Distributed: under ``torchrun --nproc_per_node=N`` every rank takes ``batch_size / N`` samples of each
global batch, DDP averages the gradients, and only rank 0 writes files or logs.

Outputs in ``out_dir``: ``checkpoint_last.pt``, ``final_ema.safetensors`` (at the end), ``log.jsonl``
(step, stage, loss, lr, seconds, val_psnr when validated), ``curves.png`` and ``train_config.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import tomllib
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import ConfigError
from .datasets import closest
from .train_data import FixedQFs, JpegPatchDataset, QFRange, StepBatchSampler, list_images, seed_worker

__all__ = [
    "TrainConfig",
    "ConfigError",
    "load_config",
    "register_arch",
    "build_model",
    "lr_at",
    "train",
    "add_train_parser",
    "run_train_command",
    "main_train",
]

CHECKPOINT_NAME = "checkpoint_last.pt"
FINAL_EMA_NAME = "final_ema.safetensors"
LOG_NAME = "log.jsonl"
CURVES_NAME = "curves.png"
CHECKPOINT_FORMAT = "cirbench-train-checkpoint-v1"


# ---------------------------------------------------------------------------------------------------------
# Config schema. Defaults are cirbench's choices (labelled "ours"), not PromptCIR's: the paper gives none.
# ---------------------------------------------------------------------------------------------------------
REQUIRED = "__required__"  # marker default: the key must be present


@dataclass
class ModelConfig:
    arch: str = REQUIRED  # a cirbench arch ("promptcir", ...), a registered name, or "module:Class"
    kwargs: dict = field(default_factory=dict)  # passed to the constructor as is


@dataclass
class DataConfig:
    folders: list[str] = field(default_factory=lambda: [REQUIRED])  # recursive; ${VAR} and relative ok
    patch_size: int = 128  # ours (spec suggests a multiple of 32)
    batch_size: int = 8  # global batch, split across ranks; ours
    workers: int = 0  # DataLoader workers per rank
    gray_fraction: float = 0.0  # ours: colour only
    cache: bool = True  # keep decoded images in memory (turn off for DF2K/LSDIR-sized sets)


@dataclass
class Stage1Config:
    qfs: list[int] = field(default_factory=lambda: [10, 20, 30, 40, 50, 60, 70])  # ours (FBCNN's 7 QFs)
    steps: int = REQUIRED


@dataclass
class Stage2Config:
    qf_min: int = 5  # ours
    qf_max: int = 95  # ours
    steps: int = 0  # ours: no online stage unless asked


@dataclass
class OptimConfig:
    lr: float = 2e-4  # ours (PromptIR-style AdamW)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # ours
    weight_decay: float = 1e-4  # ours
    warmup_steps: int = 1000  # ours: linear warm-up, then cosine to min_lr at the last step
    min_lr: float = 1e-6  # ours


@dataclass
class LossConfig:
    type: str = "l1"  # ours: "l1" or "charbonnier"
    eps: float = 1e-3  # Charbonnier epsilon; ours


@dataclass
class ValConfig:
    dataset: str = ""  # a cirbench evaluation set name (e.g. "live1"); monitoring only, never selection
    folders: list[str] = field(default_factory=list)  # and/or folders of images
    qfs: list[int] = field(default_factory=lambda: [10, 30, 50])  # ours
    every: int = 0  # steps between validations; 0 = only at the end (when a set is given)
    max_images: int = 0  # 0 = all


@dataclass
class RuntimeConfig:
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu" or "cuda"
    amp: bool = False  # bf16 autocast for the forward pass


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    ema_decay: float = 0.999  # ours
    grad_clip: float = 0.0  # max gradient norm; 0 = off; ours
    seed: int = 0
    checkpoint_every: int = 1000
    threads: int = 0  # torch intra-op threads per rank; 0 = torch's default
    source: str = field(default="", metadata={"internal": True})  # the file it came from (for errors)

    @property
    def total_steps(self) -> int:
        return self.stage1.steps + self.stage2.steps


# Keys that change what is trained: a resume must not change them.
_RESUME_FIXED = ("model", "data.patch_size", "data.batch_size", "data.gray_fraction", "stage1", "stage2",
                 "optim", "loss", "ema_decay", "grad_clip", "seed")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _check_value(value, tp, where: str, file: str):
    """Check ``value`` against annotation ``tp``; returns the value (ints widened to float where asked)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{file}: key {where!r} must be {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {where!r} must be a table [{where}], got {value!r}")
        return _build(tp, value, file, where + ".")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise bad
        (item_tp,) = typing.get_args(tp)[:1]
        return [_check_value(v, item_tp, f"{where}[{i}]", file) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    if isinstance(value, bool) != (tp is bool):  # bool is an int subclass: keep them apart
        raise bad
    if tp is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, tp):
        raise bad
    return value


def _build(cls, table: dict, file: str, prefix: str = ""):
    """Build dataclass ``cls`` from a TOML table: unknown keys, missing keys and bad types name the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{file}: unknown key {prefix + key!r}{closest(key, fields)}; "
                f"allowed{' in [' + prefix[:-1] + ']' if prefix else ''}: {', '.join(fields)}"
            )
        kwargs[key] = _check_value(value, hints[key], prefix + key, file)
    for name in fields:  # absent tables still need their required keys (in file order, for stable errors)
        if name not in kwargs and dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], {}, file, prefix + name + ".")
    obj = cls(**kwargs)
    for name in fields:
        default = getattr(obj, name)
        if default == REQUIRED or default == [REQUIRED]:
            raise ConfigError(f"{file}: missing required key {prefix + name!r}")
    return obj


_VAR = re.compile(r"\$\{(\w+)\}")


def _resolve_path(raw: str, base: Path, file: str, key: str) -> str:
    """Expand ``${VAR}`` (an unset variable is an error, not an empty string), then resolve against base."""

    def sub(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            raise ConfigError(f"{file}: key {key!r} uses ${{{m.group(1)}}}, which is not set in the "
                              "environment")
        return os.environ[m.group(1)]

    path = Path(_VAR.sub(sub, raw)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _validate(cfg: TrainConfig) -> None:
    """Value checks the types cannot express."""
    file = cfg.source or "<config>"

    def need(ok: bool, key: str, what: str):
        if not ok:
            raise ConfigError(f"{file}: key {key!r} {what}")

    need(bool(cfg.data.folders), "data.folders", "must list at least one folder")
    need(cfg.data.patch_size >= 8, "data.patch_size", "must be at least 8")
    need(cfg.data.batch_size >= 1, "data.batch_size", "must be at least 1")
    need(cfg.data.workers >= 0, "data.workers", "must be >= 0")
    need(0.0 <= cfg.data.gray_fraction <= 1.0, "data.gray_fraction", "must be in [0, 1]")
    need(bool(cfg.stage1.qfs) and all(1 <= q <= 100 for q in cfg.stage1.qfs), "stage1.qfs",
         "must be a non-empty list of integers in 1..100")
    need(cfg.stage1.steps >= 0 and cfg.stage2.steps >= 0, "stage1.steps", "and stage2.steps must be >= 0")
    need(cfg.total_steps > 0, "stage1.steps", "plus stage2.steps must be positive")
    need(1 <= cfg.stage2.qf_min <= cfg.stage2.qf_max <= 100, "stage2.qf_min",
         "and stage2.qf_max need 1 <= qf_min <= qf_max <= 100")
    need(cfg.optim.lr > 0, "optim.lr", "must be positive")
    need(0 <= cfg.optim.min_lr <= cfg.optim.lr, "optim.min_lr", "must be in [0, lr]")
    need(len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas",
         "must be two numbers in [0, 1)")
    need(cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(0 <= cfg.optim.warmup_steps <= cfg.total_steps, "optim.warmup_steps", "must be in 0..total steps")
    need(cfg.loss.type in ("l1", "charbonnier"), "loss.type", "must be 'l1' or 'charbonnier'")
    need(cfg.loss.eps > 0, "loss.eps", "must be positive")
    need(all(1 <= q <= 100 for q in cfg.val.qfs), "val.qfs", "must be integers in 1..100")
    need(cfg.val.every >= 0 and cfg.val.max_images >= 0, "val.every", "and val.max_images must be >= 0")
    need(0.0 <= cfg.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")
    need(cfg.grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)")
    need(cfg.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")
    need(cfg.threads >= 0, "threads", "must be >= 0")
    need(cfg.runtime.device in ("auto", "cpu", "cuda"), "runtime.device", "must be 'auto', 'cpu' or 'cuda'")


def config_from_dict(table: dict, source: str = "<config>", base_dir: str | Path = ".") -> TrainConfig:
    """Build and validate a config from a parsed TOML table; paths resolve against ``base_dir``."""
    cfg = _build(TrainConfig, table, source)
    cfg.source = source
    base = Path(base_dir)
    cfg.data.folders = [_resolve_path(f, base, source, "data.folders") for f in cfg.data.folders]
    cfg.val.folders = [_resolve_path(f, base, source, "val.folders") for f in cfg.val.folders]
    _validate(cfg)
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a training TOML file; errors name the file and the key."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return config_from_dict(table, str(path), path.resolve().parent)


def override_steps(cfg: TrainConfig, total: int) -> TrainConfig:
    """The same recipe squeezed into ``total`` steps (smoke runs): both stages and the warm-up scale."""
    if total < 1:
        raise ConfigError(f"steps override must be at least 1, got {total}")
    cfg = copy.deepcopy(cfg)
    scale = total / cfg.total_steps
    s1 = min(total, round(cfg.stage1.steps * scale)) if cfg.stage2.steps else total
    cfg.stage1.steps, cfg.stage2.steps = s1, total - s1
    cfg.optim.warmup_steps = min(total, math.floor(cfg.optim.warmup_steps * scale))
    return cfg


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# ---------------------------------------------------------------------------------------------------------
# Model, schedule, loss
# ---------------------------------------------------------------------------------------------------------
_ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register_arch(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``name`` buildable from a config (tests, experiments); cirbench's archs need no registration."""
    _ARCHS[name] = builder


def build_model(arch: str, kwargs: dict) -> nn.Module:
    """A registered builder, a ``module:Class`` import path, or ``cirbench.archs.build_arch``."""
    if arch in _ARCHS:
        return _ARCHS[arch](**kwargs)
    if ":" in arch:
        module, _, attr = arch.partition(":")
        return getattr(importlib.import_module(module), attr)(**kwargs)
    from .archs import build_arch

    return build_arch(arch, **kwargs)


def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _loss_fn(cfg: LossConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if cfg.type == "l1":
        return F.l1_loss
    eps2 = cfg.eps**2
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


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then ``os.replace``: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------
# Logs and curves
# ---------------------------------------------------------------------------------------------------------
def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a ``log.jsonl``."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_curves(log_path: Path, png_path: Path) -> None:
    """Plot training loss and validation PSNR against the step (Agg canvas: no display, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path)
    if not records:
        return
    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)
    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    ax_loss.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    window = max(1, len(losses) // 50)
    if window > 1:  # a moving average makes the trend readable under per-batch noise
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(steps[window - 1 :], smooth, lw=1.2, label=f"mean of {window}")
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    ax_loss.legend()
    val = [r for r in records if "val_psnr" in r]
    if val:
        ax_val.plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", label="model (EMA)")
        ax_val.plot([r["step"] for r in val], [r["val_jpeg_psnr"] for r in val], "--", label="JPEG input")
        ax_val.legend()
    ax_val.set(xlabel="step", ylabel="PSNR-Y (dB)", title="validation (mean over QFs)")
    for ax in (ax_loss, ax_val):
        for r in records[1:]:
            if r["stage"] != records[0]["stage"]:
                ax.axvline(r["step"], color="gray", ls=":", lw=0.8)  # stage 2 starts
                break
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, png_path)


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------
class _Validator:
    """PSNR on Y (gray sets: on gray) of the EMA model against the JPEG input, mean over images per QF."""

    def __init__(self, cfg: ValConfig, device: torch.device):
        from .datasets import get_dataset
        from .images import read_image
        from .jpeg import compress
        from .metrics import image_metrics

        self.device, self.qfs, self._metrics = device, list(cfg.qfs), image_metrics
        sources = []
        if cfg.dataset:
            ds = get_dataset(cfg.dataset)
            sources += [(p, ds.load) for p in ds.files]
        for folder in cfg.folders:
            files = list_images([folder])
            sources += [(p, read_image) for p in files]
        if cfg.max_images:
            sources = sources[: cfg.max_images]
        self.items = []  # (ground truth, {qf: jpeg pixels})
        jpeg_psnr: dict[int, list[float]] = {q: [] for q in self.qfs}
        for path, load in sources:
            gt = load(path)
            jpegs = {q: compress(gt, q).pixels for q in self.qfs}
            self.items.append((gt, jpegs))
            for q in self.qfs:
                jpeg_psnr[q].append(self._psnr(gt, jpegs[q]))
        self.jpeg_psnr = {q: float(np.mean(v)) for q, v in jpeg_psnr.items()}

    def _psnr(self, gt: np.ndarray, out: np.ndarray) -> float:
        m = self._metrics(gt, out)
        return m["gray"]["psnr"] if "gray" in m else m["y"]["psnr"]

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict:
        from .inference import pad_image

        was_training = model.training
        model.eval()
        multiple = int(getattr(model, "pad_multiple", 1))
        psnr: dict[int, list[float]] = {q: [] for q in self.qfs}
        for gt, jpegs in self.items:
            for q, jpeg in jpegs.items():
                x = torch.from_numpy(jpeg).float().div(255)
                x = x[None, None].expand(1, 3, *x.shape) if x.ndim == 2 else x.permute(2, 0, 1)[None]
                h, w = x.shape[-2:]
                out = model(pad_image(x.to(self.device), multiple, "reflect"))[..., :h, :w].float()
                if jpeg.ndim == 2:
                    out = out.mean(1, keepdim=True)  # gray through an RGB model: channel mean (inference.py)
                out = out.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
                psnr[q].append(self._psnr(gt, out[..., 0] if jpeg.ndim == 2 else out))
        model.train(was_training)
        per_qf = {q: float(np.mean(v)) for q, v in psnr.items()}
        return {
            "val_psnr": float(np.mean(list(per_qf.values()))),
            "val_jpeg_psnr": float(np.mean(list(self.jpeg_psnr.values()))),
            "val_psnr_qf": {str(q): v for q, v in per_qf.items()},
            "val_jpeg_psnr_qf": {str(q): v for q, v in self.jpeg_psnr.items()},
        }


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we called init_process_group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _setup_distributed(runtime: RuntimeConfig) -> _Dist:
    """Pick the device; join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    use_cuda = runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available())
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device = 'cuda' but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return _Dist(dist.get_rank(), dist.get_world_size(), device, owns)


class _Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, ctx: _Dist):
        self.cfg, self.out, self.ctx = cfg, out_dir, ctx
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.data.batch_size % ctx.world_size:
            raise ConfigError(
                f"{cfg.source}: key 'data.batch_size' ({cfg.data.batch_size}) must be divisible by the "
                f"number of processes ({ctx.world_size})"
            )
        # The same seed on every rank, so every rank builds the same initial weights.
        _seed_all(cfg.seed)
        model = build_model(cfg.model.arch, cfg.model.kwargs)
        multiple = int(getattr(model, "pad_multiple", 1))
        if cfg.data.patch_size % multiple:
            raise ConfigError(f"{cfg.source}: key 'data.patch_size' ({cfg.data.patch_size}) must be a "
                              f"multiple of the model's pad_multiple ({multiple})")
        self.model = model.to(ctx.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net: nn.Module = self.model
        if ctx.world_size > 1:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
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
    def _config_dict(self) -> dict:
        d = dataclasses.asdict(self.cfg)
        d.pop("source")
        return d

    def save_checkpoint(self) -> None:
        rng = [_rng_state()]
        if self.ctx.world_size > 1:  # every rank's RNG, so a DDP resume is exact on every rank
            rng = [None] * self.ctx.world_size
            dist.all_gather_object(rng, _rng_state())
        if self.ctx.main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "elapsed_s": self.elapsed,
                "config": self._config_dict(),
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                # The data's whole state: samples are a function of (seed, step); see train_data.
                "sampler": {"seed": self.cfg.seed, "next_step": self.step,
                            "batch_size": self.cfg.data.batch_size},
            }
            atomic_torch_save(state, self.out / CHECKPOINT_NAME)
        self.ctx.barrier()

    def load_checkpoint(self) -> None:
        path = self.out / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT_NAME} in {self.out}")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a cirbench training checkpoint")
        old, new = _flat(ckpt["config"]), _flat(self._config_dict())
        changed = [k for k in new if k.startswith(_RESUME_FIXED) and old.get(k) != new[k]]
        if changed:
            diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
            raise ConfigError(f"{self.cfg.source}: cannot resume {path} with a different recipe ({diffs})")
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        if len(ckpt["rng"]) == self.ctx.world_size:
            _set_rng_state(ckpt["rng"][self.ctx.rank])
        elif self.ctx.main:
            warnings.warn(f"{path} was written by {len(ckpt['rng'])} process(es), this run has "
                          f"{self.ctx.world_size}: RNG states are not restored", stacklevel=2)

    # -- one step --------------------------------------------------------------------------------------
    def _loader(self, stage: int, start: int, stop: int) -> torch.utils.data.DataLoader:
        d = self.cfg.data
        qf = FixedQFs(tuple(self.cfg.stage1.qfs)) if stage == 1 else QFRange(self.cfg.stage2.qf_min,
                                                                             self.cfg.stage2.qf_max)
        dataset = JpegPatchDataset(self.images, d.patch_size, qf, d.gray_fraction, self.cfg.seed, d.cache)
        sampler = StepBatchSampler(start, stop, d.batch_size, self.ctx.rank, self.ctx.world_size)
        # An explicit generator keeps DataLoader's worker base seed from consuming the global torch RNG
        # (which would make a resumed run's RNG drift from an uninterrupted one).
        gen = torch.Generator().manual_seed(_derive_seed(self.cfg.seed, 4, self.ctx.rank, start))
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=d.workers, worker_init_fn=seed_worker,
            generator=gen, pin_memory=self.ctx.device.type == "cuda",
        )

    def _train_step(self, inp: torch.Tensor, target: torch.Tensor) -> float:
        dev = self.ctx.device
        inp, target = inp.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
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
        if self.ctx.world_size > 1:  # log the global-batch loss, not rank 0's share
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss /= self.ctx.world_size
        return float(loss)

    # -- the run ---------------------------------------------------------------------------------------
    def _prepare_log(self) -> Path:
        log = self.out / LOG_NAME
        if self.ctx.main:
            # Drop records past the checkpoint (a run killed after its last checkpoint logged them).
            kept = [r for r in read_log(log) if r["step"] <= self.step]
            _atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))
        return log

    def run(self, resume: bool, stop_at: int | None) -> dict:
        cfg, ctx = self.cfg, self.ctx
        if ctx.main:
            _remove_stale_temps(self.out)
        if resume:
            self.load_checkpoint()
        elif (self.out / CHECKPOINT_NAME).exists():
            raise FileExistsError(f"{self.out} already holds a {CHECKPOINT_NAME}: pass --resume or pick "
                                  f"another --out")
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(self._config_dict(), indent=2) + "\n")
        ctx.barrier()
        log_path = self._prepare_log()
        validator = None
        if ctx.main and (cfg.val.dataset or cfg.val.folders):
            validator = _Validator(cfg.val, ctx.device)
        total = cfg.total_steps
        end = total if stop_at is None else min(total, stop_at)
        bar = _progress(total, self.step, disable=not ctx.main)
        stages = [(1, cfg.stage1.steps), (2, total)]  # (stage, its last step)
        last_saved = self.step
        with open(log_path, "a", encoding="utf-8") if ctx.main else _nullfile() as log:
            for stage, last in stages:
                if self.step >= min(last, end):
                    continue
                t0 = time.perf_counter()
                for inp, target in self._loader(stage, self.step, min(last, end)):
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss = self._train_step(inp, target)
                    self.step += 1
                    now = time.perf_counter()
                    self.elapsed += now - t0
                    t0 = now
                    record = {"step": self.step, "stage": stage, "loss": loss, "lr": lr,
                              "seconds": round(self.elapsed, 3)}
                    due = (cfg.val.every and self.step % cfg.val.every == 0) or self.step == total
                    if validator and due:
                        record.update(validator(self.ema))
                        t0 = time.perf_counter()  # validation time is not training time
                    if ctx.main:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        bar.set_postfix(stage=stage, loss=f"{loss:.4g}", refresh=False)
                        bar.update(1)
                    if self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                        last_saved = self.step
                        if ctx.main:
                            write_curves(log_path, self.out / CURVES_NAME)
        bar.close()
        if self.step != last_saved:
            self.save_checkpoint()
        finished = self.step >= total
        if ctx.main:
            write_curves(log_path, self.out / CURVES_NAME)
            if finished:
                from .checkpoints import save_state_dict

                final = save_state_dict(self.ema.state_dict(), self.out / FINAL_EMA_NAME)
                os.chmod(final, _umask_mode())  # save_state_dict's temp file is 0600
        ctx.barrier()
        return {"step": self.step, "finished": finished, "out_dir": str(self.out), "seconds": self.elapsed}


def _remove_stale_temps(out: Path) -> None:
    """Delete temp files left by a process killed mid-write. They are never read: every output is
    written to a temp file and renamed into place whole."""
    for name in (CHECKPOINT_NAME, FINAL_EMA_NAME, LOG_NAME, CURVES_NAME):
        for stale in out.glob(f".{name}.*tmp*"):
            stale.unlink(missing_ok=True)


def _progress(total: int, initial: int, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                disable=disable or not sys.stderr.isatty())


class _nullfile:  # noqa: N801 - used like open() on ranks that write nothing
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def train(
    config: TrainConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    resume: bool = False,
    *,
    steps_override: int | None = None,
    stop_at: int | None = None,
) -> dict:
    """Train from a config (file or :class:`TrainConfig`) into ``out_dir``.

    ``resume`` continues ``out_dir/checkpoint_last.pt`` exactly. ``steps_override`` squeezes the recipe
    into that many steps (:func:`override_steps`). ``stop_at`` stops after that global step with a
    checkpoint, leaving the schedule unchanged (a resumable pause).
    Returns {step, finished, out_dir, seconds}.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    if steps_override is not None:
        cfg = override_steps(cfg, steps_override)
    ctx = _setup_distributed(cfg.runtime)
    try:
        return _Trainer(cfg, Path(out_dir), ctx).run(resume, stop_at)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training TOML (see configs/)")
    p.add_argument("--out", default=None, help="output folder (default: runs/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint_last.pt exactly")
    p.add_argument("--steps-override", type=int, default=None, metavar="N",
                   help="squeeze both stages and the warm-up into N steps in total (smoke runs)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after global step STEP with a checkpoint; --resume continues")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on an argparse subparsers object; the handler is in ``func``."""
    p = subparsers.add_parser(
        "train", help="train a restoration network (PromptCIR two-stage recipe)",
        description="Train with a TOML config; run under torchrun --nproc_per_node=N for DDP.",
    )
    _add_arguments(p)
    p.set_defaults(func=run_train_command)
    return p


def run_train_command(args: argparse.Namespace) -> int:
    """Handler for ``cirbench train``: 0 on success. Errors propagate, so ``cirbench``'s main (and
    :func:`main_train`) report them as one ``error:`` line with exit code 2 (``--debug``: traceback)."""
    out = args.out or str(Path("runs") / "train" / Path(args.config).stem)
    result = train(args.config, out, resume=args.resume, steps_override=args.steps_override,
                   stop_at=args.stop_at)
    if int(os.environ.get("RANK", "0")) == 0:
        state = "finished" if result["finished"] else "stopped"
        print(f"{state} at step {result['step']} ({result['seconds']:.0f} s of training); outputs in {out}")
    return 0


def main_train(argv: list[str] | None = None) -> int:
    """``python -m cirbench.training --config ...`` (what torchrun launches)."""
    parser = argparse.ArgumentParser(prog="cirbench train", description="Train with a TOML config.")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train_command(args)
    except (ValueError, LookupError, OSError) as exc:  # user errors (config, files): a message, no traceback
        print(f"cirbench train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main_train())
