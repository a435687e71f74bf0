"""The metrics wing: PSNR, SSIM and PSNR-B exactly as the JPEG-restoration literature computes them, in every
metric space (:mod:`.spaces`), and any other metric as a plug-in (:mod:`.spec`).

One metric is one file that registers a :class:`Metric` (``psnr.py``, ``ssim.py``, ``psnrb.py``, each also holding
its batched tensor function: ``metrics.ssim.ssim(x, y)``, ``metrics.psnrb.bef(y)``); ``iqa.py`` registers pyiqa's
metrics: the curated ones from their cards (``cirbench/data/metrics/``), any other as ``pyiqa:NAME``. The functions
here score images: :func:`image_metrics` one uint8 pair in every space that applies, :func:`compute` a batch in
one space. Every number is computed on uint8-rounded images, in float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from . import iqa, psnr, psnrb, ssim  # noqa: F401  (each file registers its metric; iqa: pyiqa's, from cards)
from .spaces import (
    COLOUR_SPACES,
    LUMA_SPACES,
    SPACES,
    Y_CONVENTION,
    Pair,
    luma,
    pairs,
    rgb_to_y,
    rgb_to_y_full,
    spaces_of,
    to_tensor,
)
from .spec import PLUGIN_SPACES, REGISTRY, Metric, get_metric, metric_names, register, resolve_metrics

__all__ = [
    "SPACES", "COLOUR_SPACES", "LUMA_SPACES", "Y_CONVENTION", "DEFAULT_METRICS", "PRIMARY", "PLUGIN_SPACES", "Metric",
    "REGISTRY", "register", "get_metric", "resolve_metrics", "metric_names", "spaces_of", "rgb_to_y",
    "rgb_to_y_full", "luma", "to_tensor", "Pair", "pairs", "compute",
    "image_metrics",
]

DEFAULT_METRICS = ("psnr", "ssim", "psnrb")  # what a run computes unless asked otherwise
PRIMARY = DEFAULT_METRICS[0]  # the one number when one is wanted: training's validation, a regress example


def _metrics(metrics: Sequence[Metric | str] | None) -> list[Metric]:
    names = DEFAULT_METRICS if metrics is None else metrics
    return [m if isinstance(m, Metric) else get_metric(m) for m in names]


def compute(gt: torch.Tensor, restored: torch.Tensor, space: str,
            metrics: Sequence[Metric | str] | None = None, engine: str | None = None) -> dict[str, torch.Tensor]:
    """The metrics of a batch in one space; inputs (B,C,H,W) float64 on 0..255, on any device. Returns
    {name: (B,) tensor}. ``engine``: "numpy" (the CPU default) or "torch" (the batched path of other devices)."""
    if gt.shape != restored.shape:
        raise ValueError(f"shape mismatch: ground truth {tuple(gt.shape)} vs restored {tuple(restored.shape)}")
    if space not in SPACES:
        raise ValueError(f"unknown metric space {space!r}; expected one of {SPACES}")
    if space in COLOUR_SPACES and gt.shape[1] != 3:
        raise ValueError(f"the {space!r} space needs RGB input")
    if space == "gray" and gt.shape[1] != 1:
        raise ValueError("the 'gray' space needs single-channel input")
    pair = pairs(gt, restored, [space], engine)[space]
    return {m.name: torch.tensor(m.compute(pair), dtype=torch.float64) for m in _metrics(metrics)
            if space in m.spaces}


def image_metrics(gt: np.ndarray, restored: np.ndarray, spaces: Iterable[str] | None = None,
                  metrics: Sequence[Metric | str] | None = None,
                  device: str | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one uint8 image pair in every space that applies (:func:`spaces_of`), or in those of
    ``spaces`` that apply: {space: {metric: value}}, each space holding the metrics that apply to it.
    ``device`` (e.g. "cuda"): score there with the batched tensor path; by default, on the CPU with NumPy."""
    if gt.dtype != np.uint8 or restored.dtype != np.uint8:
        raise TypeError("metrics are computed on uint8-rounded images")
    if spaces is not None:
        unknown = [s for s in spaces if s not in SPACES]
        if unknown:
            raise ValueError(f"unknown metric spaces {unknown}; expected some of {SPACES}")
    ms = _metrics(metrics)
    wanted = SPACES if spaces is None else spaces
    if device is None or device == "cpu":
        by_space = pairs(gt, restored, wanted, scratch=True)  # planes reused image after image (this thread)
    else:
        by_space = pairs(to_tensor(gt).to(device), to_tensor(restored).to(device), wanted)
    return {space: {m.name: m.compute(pair)[0] for m in ms if space in m.spaces} for space, pair in by_space.items()}
