"""The ``cirbench train`` TOML schema: dataclasses, loading, validation and the resume-compatibility rule.

Every default is cirbench's choice (labelled "ours"), not PromptCIR's: the paper gives none. The tables are
validated by :func:`cirbench.config.from_table` (a field without a default is a required key); errors are
:class:`cirbench.errors.ConfigError` and name the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import from_table, load_toml
from ..errors import ConfigError

__all__ = [
    "ConfigError",
    "TrainConfig",
    "ModelConfig",
    "DataConfig",
    "Stage1Config",
    "Stage2Config",
    "OptimConfig",
    "LossConfig",
    "ValConfig",
    "RuntimeConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "override_steps",
    "recipe_changes",
]

@dataclass(kw_only=True)
class ModelConfig:
    arch: str  # an architecture the registry knows ("promptcir", ...), an entry point, or "module:Class"
    kwargs: dict = field(default_factory=dict)  # passed to the constructor as is
    init: str = ""  # optional weights to start from (fine-tuning); loaded strictly by cirbench.checkpoints


@dataclass(kw_only=True)
class DataConfig:
    folders: list[str]  # recursive; ${VAR} and relative ok
    patch_size: int = 128  # ours (spec suggests a multiple of 32)
    batch_size: int = 8  # global batch, split across ranks; ours
    workers: int = 0  # DataLoader workers per rank
    gray_fraction: float = 0.0  # ours: colour only
    cache: bool = True  # keep decoded images in memory (turn off for DF2K/LSDIR-sized sets)


@dataclass(kw_only=True)
class Stage1Config:
    qfs: list[int] = field(default_factory=lambda: [10, 20, 30, 40, 50, 60, 70])  # ours (FBCNN's 7 QFs)
    steps: int


@dataclass
class Stage2Config:
    qf_min: int = 5  # ours
    qf_max: int = 95  # ours
    steps: int = 0  # ours: no online stage unless asked
    # "uniform" over [qf_min, qf_max], or "log-uniform" (more low QFs: ln(30/5)/ln(95/5) = 61 % of draws
    # at QF <= 30 over [5, 95]), for a model that must gain most where the artifacts are worst; ours
    qf_sampling: Literal["uniform", "log-uniform"] = "uniform"


@dataclass
class OptimConfig:
    lr: float = 2e-4  # ours (PromptIR-style AdamW)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # ours
    weight_decay: float = 1e-4  # ours
    warmup_steps: int = 1000  # ours: linear warm-up, then cosine to min_lr at the last step
    min_lr: float = 1e-6  # ours


@dataclass
class LossConfig:
    type: Literal["l1", "charbonnier", "psnr"] = "l1"  # ours; "psnr" is per-sample -PSNR, as HINet
    eps: float = 1e-3  # Charbonnier epsilon; for "psnr", eps**2 is the MSE floor (a 60 dB cap); ours


@dataclass
class ValConfig:
    dataset: str = ""  # a cirbench evaluation set name (e.g. "live1"); monitoring only, never selection
    folders: list[str] = field(default_factory=list)  # and/or folders of images
    qfs: list[int] = field(default_factory=lambda: [10, 30, 50])  # ours
    every: int = 0  # steps between validations; 0 = only at the end (when a set is given)
    max_images: int = 0  # 0 = all


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda if available, else cpu
    amp: bool = False  # bf16 autocast for the forward pass (refused on a CPU without native bf16)
    channels_last: bool = False  # NHWC model and batches (13 % faster on this CPU for the compact model)


@dataclass(kw_only=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    stage1: Stage1Config
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
RESUME_FIXED = ("model", "data.patch_size", "data.batch_size", "data.gray_fraction", "stage1", "stage2",
                "optim", "loss", "ema_decay", "grad_clip", "seed")


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
    need(cfg.loss.eps > 0, "loss.eps", "must be positive")
    need(all(1 <= q <= 100 for q in cfg.val.qfs), "val.qfs", "must be integers in 1..100")
    need(cfg.val.every >= 0 and cfg.val.max_images >= 0, "val.every", "and val.max_images must be >= 0")
    need(0.0 <= cfg.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")
    need(cfg.grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)")
    need(cfg.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")
    need(cfg.threads >= 0, "threads", "must be >= 0")


def config_from_dict(table: dict, source: str = "<config>", base_dir: str | Path = ".") -> TrainConfig:
    """Build and validate a config from a parsed TOML table; paths resolve against ``base_dir``."""
    cfg = from_table(TrainConfig, table, where=source)
    cfg.source = source
    base = Path(base_dir)
    cfg.data.folders = [_resolve_path(f, base, source, "data.folders") for f in cfg.data.folders]
    cfg.val.folders = [_resolve_path(f, base, source, "val.folders") for f in cfg.val.folders]
    if cfg.model.init:
        cfg.model.init = _resolve_path(cfg.model.init, base, source, "model.init")
    _validate(cfg)
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a training TOML file; errors name the file and the key."""
    path = Path(path)
    return config_from_dict(load_toml(path), str(path), path.resolve().parent)


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


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config as plain values (what checkpoints and ``train_config.json`` store); ``source`` is dropped."""
    d = dataclasses.asdict(cfg)
    d.pop("source")
    return d


def recipe_changes(saved: dict, current: dict) -> list[tuple[str, object, object]]:
    """``(key, saved value, current value)`` for every :data:`RESUME_FIXED` key that differs."""
    old, new = _flat(saved), _flat(current)
    return [(k, old.get(k), new[k]) for k in new if k.startswith(RESUME_FIXED) and old.get(k) != new[k]]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out

