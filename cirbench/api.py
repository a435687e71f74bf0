"""cirbench as a Python library: :func:`evaluate` (what ``cirbench run`` and ``cirbench regress`` call) and
:func:`score` (the benchmark's numbers for one image, e.g. in a training loop's validation step).

``evaluate`` returns a :class:`Results`: the records as a pandas DataFrame (the fields of ``records.jsonl``,
one row per image x degradation x metric space x model setting), the run's provenance (``run.json``) and
``report(format=...)``. Without ``out`` the run is written to a temporary folder that lives as long as the
``Results`` object (the records are also held in memory).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .errors import ConfigError
from .metrics import COLOUR_SPACES, DEFAULT_METRICS, SPACES, image_metrics, resolve_metrics
from .records import read_records, read_run_info

__all__ = ["Results", "evaluate", "score", "build_models"]


@dataclass
class Results:
    """What :func:`evaluate` returns."""

    out: Path  # the run folder
    records: Any  # pandas DataFrame, one row per record
    run_info: dict  # run.json: provenance and each metric's spec
    written: int = 0  # records written by this call (the rest were already on disk: a resumed run)
    already_done: int = 0  # image x degradation x model results already recorded before this call
    skipped_invalid: int = 0  # ... left out as invalid (skip_invalid)
    images_only: int = 0  # ... recorded before, run again only to save their outputs (save_images)
    skipped_datasets: dict = field(default_factory=dict)  # absent datasets that were skipped, with the reason
    wall_seconds: float = 0.0
    model_seconds: float = 0.0
    _tmp: Any = field(default=None, repr=False)  # keeps a temporary run folder alive

    def report(self, format: str = "table", **options) -> str:  # noqa: A002 (the CLI's word)
        """The report of this run in any format of ``cirbench report`` (table, md, csv, json, latex, html)."""
        from .report import render

        return render([self.out], format, **options)


def _csv(value, what: str = "") -> list | None:
    """A name, or several; None when not given. An empty list is an error: it would mean "no filter"."""
    if value is None:
        return None
    out = [value] if isinstance(value, (str, int)) else list(value)
    if not out or any(v == "" for v in out):
        raise ConfigError(f"{what or 'a list'} {value!r} names nothing; give names, or None for the default")
    return out


def build_models(names: Sequence[str], *, weights=None, settings=None, device: str = "cpu",
                 skip_missing: bool = False, profile: bool = False, allow_code: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Restorers by the name they are run under (``NAME=SPEC`` names one; a user model's own name for
    ``module:attr``; ``outputs:`` a short label); with
    ``profile``, each with its profile (parameters, GFLOPs, peak memory) for the report's efficiency table."""
    from .errors import WeightsMissing
    from .zoo import create_model
    from .zoo.profile import profile as measure_profile

    out = {}
    for given in names:
        label, name = _label(given)
        try:
            m = create_model(name, weights=weights if name != "jpeg" else None, settings=settings, device=device,
                             allow_code=allow_code)
        except WeightsMissing as exc:
            if not skip_missing:
                raise
            log(f"skipped model: {exc}")
            continue
        if profile and hasattr(m, "nets"):
            m.info.extra["profile"] = measure_profile(m)
        label = label or (m.info.name if name != m.info.name and ":" in name else name)
        if label in out:
            raise ConfigError(f"two models are labelled {label!r} ({given} and another); name one: NAME={name}")
        if label != m.info.name:
            m.info.name = label  # the row's label is the records' model name
        out[label] = m
    return out


def _label(given: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` -> (NAME, SPEC): a row label chosen by the user (e.g. for a long ``outputs:`` template)."""
    name, sep, spec = given.partition("=")
    if sep and name and spec and not any(c in name for c in ":/\\{}"):
        return name, spec
    return None, given


def _protocol(protocol, datasets, qfs):
    from .eval.protocols import Protocol, load_protocol

    if protocol is not None or not (datasets or qfs):
        return load_protocol(protocol or "blind").select(datasets, qfs)
    blind = load_protocol("blind")  # an ad-hoc blind run on exactly the datasets and QFs given
    return Protocol.adhoc(datasets or blind.datasets, qfs or sorted({g.qf for _, g in blind.jobs}), blind.models)


def _samples_when_nothing_present(protocol, root, log):
    """A fresh machine has no standard dataset: say how to get each, and run on the bundled samples. A protocol
    of the user's own folders is not a fresh machine: its missing folders are an error."""
    from .errors import DatasetMissing
    from .eval.datasets import REGISTRY, SAMPLES, data_root, get_dataset, present

    if any(present(d, root) for d in protocol.datasets):
        return protocol
    folders = [d for d in protocol.datasets if d not in REGISTRY]
    if folders:
        why = []
        for d in folders:
            try:
                get_dataset(d, root)
            except DatasetMissing as exc:
                why.append(str(exc))
        raise DatasetMissing(f"none of the protocol's datasets is present ({'; '.join(why)}); create the folders "
                             "or name others with --datasets")
    commands = list(dict.fromkeys(REGISTRY[d].fetch_command for d in protocol.datasets if d in REGISTRY))
    log(f"none of the protocol's datasets ({', '.join(protocol.datasets)}) is under {data_root(root)}; get them "
        f"with: {'; '.join(commands)}. Running on the photographs bundled with scikit-image "
        f"({', '.join(SAMPLES)}) instead.")
    return protocol.select(list(SAMPLES))


def evaluate(models: Sequence[str] | str | None = None, protocol: str | os.PathLike | None = None,
             datasets: Sequence[str] | str | None = None, qf: Sequence[int] | int | None = None,
             metrics: Sequence[str] | str | None = None, data_root: str | os.PathLike | None = None,
             out: str | os.PathLike | None = None, device: str = "auto", *, weights: str | None = None,
             setting: str | None = None, tile: int | None = None, overlap: int | None = None,
             ensemble: str | None = None, precision: str = "fp32", channels_last: bool = False,
             shard: str | None = None, save_images: bool = False, skip_invalid: bool = False,
             profile: bool = False, progress: bool | None = None, samples_fallback: bool = False,
             trust_records: bool = False, log: Callable[[str], None] | None = None) -> Results:
    """Evaluate ``models`` (names: cards, ``jpeg``, ``outputs:TEMPLATE``, ``module:attr``; default the
    protocol's) on ``protocol`` (a name or a TOML path; default ``blind``), restricted to ``datasets`` and
    ``qf``. Without a protocol but with datasets or QFs, an ad-hoc blind run on exactly those. ``metrics``: names
    (registered, entry points, or ``module:attr``); default the protocol's, else psnr, ssim, psnrb.

    Datasets named here must be present; a protocol's others are skipped when absent. ``samples_fallback``: when
    none of the protocol's datasets is present (and none was named), run on the bundled samples instead.
    ``progress``: None (default) a bar on a terminal and a line every 30 s elsewhere; False silent.
    Under torchrun every rank evaluates its share and rank 0 merges. Rerunning into the same ``out`` resumes;
    records there without a run.json (their provenance lost) are resumed only with ``trust_records``."""
    from .eval import distributed as dist_run
    from .eval.runner import parse_shard
    from .zoo.inference import InferenceSettings

    log = log or (lambda msg: print(msg, file=sys.stderr))
    datasets, qfs = _csv(datasets, "datasets"), [int(q) for q in _csv(qf, "qf") or []] or None
    proto = _protocol(protocol, datasets, qfs)
    if not proto.jobs:
        raise ConfigError("nothing to run: the dataset/QF filters left no job in the protocol")
    metric_list = resolve_metrics(_csv(metrics, "metrics")) if metrics is not None else resolve_metrics(
        proto.metrics or DEFAULT_METRICS, allow_code=False, where=str(proto.path))
    settings = InferenceSettings.named(setting or proto.setting, precision=precision, channels_last=channels_last,
                                       **({"tile": tile} if tile else {}),
                                       **({"overlap": overlap} if overlap is not None else {}),
                                       **({"ensemble": ensemble} if ensemble else {}))
    names = _csv(models, "models") or list(proto.models)
    weighted = [n for n in names if n != "jpeg"]
    if weights and len(weighted) != 1:
        raise ConfigError(f"weights= needs exactly one model besides jpeg, got {', '.join(weighted)}")
    ctx = distributed.setup(device)
    tmp = None
    try:
        # A protocol's own model list is data: it names cards and registered models, never module:attr.
        nets = build_models(names, weights=weights, settings=settings, device=ctx.device, skip_missing=not models,
                            profile=profile, allow_code=bool(models), log=log)
        if not nets:
            raise ConfigError("no model to run")
        if samples_fallback and not datasets:  # after the models: a mistyped model is the only line printed
            proto = _samples_when_nothing_present(proto, data_root, log if ctx.main else lambda _: None)
        if out is None:
            tmp = tempfile.TemporaryDirectory(prefix="cirbench-run-")
            out = Path(tmp.name) / proto.name
        out = Path(out)
        kwargs = dict(data_root=data_root, required_datasets=set(datasets or ()), save_images=save_images,
                      skip_invalid=skip_invalid, metrics=metric_list, progress=progress,
                      trust_records=trust_records, log=log)
        if ctx.world == 1:
            kwargs["shard"] = parse_shard(shard)
        elif shard:
            raise ConfigError("--shard and torchrun both split the images: use one of them")
        summary = dist_run.run(proto, nets, out, ctx, **kwargs)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    finally:
        distributed.teardown(ctx)
    return Results(out=out, records=read_records(out), run_info=dict(read_run_info(out)), written=summary.written,
                   already_done=summary.skipped_done, skipped_invalid=summary.skipped_invalid,
                   images_only=summary.images_only, skipped_datasets=dict(summary.skipped_datasets),
                   wall_seconds=summary.wall_seconds, model_seconds=summary.model_seconds, _tmp=tmp)


def _as_uint8(img, what: str) -> np.ndarray:
    """An image as the benchmark scores it: uint8 HxW or HxWx3. Float tensors in [0, 1] (CxH xW or 1xCxHxW)
    are rounded as the inference engine rounds a model's output (NaN -> 0, clamp, x255, round half to even)."""
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ConfigError(f"score: {what} is a {img.dtype} array; give uint8 (0..255) or a float tensor in [0, 1]")
        a = img
    else:
        import torch

        if not isinstance(img, torch.Tensor):
            raise ConfigError(f"score: {what} must be a uint8 numpy array or a torch tensor, got {type(img).__name__}")
        t = img.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ConfigError(f"score: {what} holds a batch of {t.shape[0]}; score one image at a time")
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ConfigError(f"score: {what} must be CxHxW or 1xCxHxW with C = 1 or 3, got {tuple(img.shape)}")
        if t.dtype == torch.uint8:
            u = t
        else:
            from .images import to_uint8

            u, _ = to_uint8(t)
        a = u[0].cpu().numpy() if u.shape[0] == 1 else u.permute(1, 2, 0).cpu().numpy()
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ConfigError(f"score: {what} must be HxW or HxWx3, got {a.shape}")
    return np.ascontiguousarray(a)


def score(restored, target, metrics: Sequence[str] | str | None = None,
          space: str | None = None) -> dict[str, float] | dict[str, dict[str, float]]:
    """The benchmark's numbers for one image: exactly what its record holds.

    ``restored`` and ``target`` are uint8 arrays (HxW or HxWx3) or float tensors in [0, 1] (CxHxW or
    1xCxHxW, rounded as the benchmark rounds a model's output). ``metrics``: names (default psnr, ssim,
    psnrb). Returns {metric: value} for a gray image or when ``space`` is given; for a colour image without
    ``space``, {space: {metric: value}} over y, y-float, y-full and rgb."""
    r, t = _as_uint8(restored, "restored"), _as_uint8(target, "target")
    if r.shape != t.shape:
        raise ConfigError(f"score: restored {r.shape} and target {t.shape} differ in shape")
    if space is not None and space not in SPACES:
        raise ConfigError(f"score: unknown space {space!r}; choose from {', '.join(SPACES)}")
    colour = r.ndim == 3
    if space is not None and (space in COLOUR_SPACES) != colour:
        raise ConfigError(f"score: space {space!r} does not apply to a {'colour' if colour else 'gray'} image")
    chosen = resolve_metrics(_csv(metrics) or DEFAULT_METRICS)
    per_space = image_metrics(t, r, spaces=[space] if space else None, metrics=chosen)
    if space is not None or not colour:
        return per_space[space or "gray"]
    return per_space
