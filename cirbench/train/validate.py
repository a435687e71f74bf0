"""Validation during training: PSNR on Y (gray images: on their one channel) of the EMA model against the
JPEG input, mean over images per QF. The model runs through the inference engine
(:class:`cirbench.zoo.inference.TorchRestorer`), so padding, gray handling and rounding are the evaluation's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..eval.datasets import get_dataset
from ..images import read_image
from ..jpeg import compress
from ..metrics import PRIMARY, image_metrics
from ..zoo.inference import TorchRestorer
from ..zoo.restorer import ModelInfo
from .config import ValConfig
from .data import list_images

__all__ = ["Validator"]


def _psnr(gt: np.ndarray, out: np.ndarray) -> float:
    m = image_metrics(gt, out, spaces=("y", "gray"), metrics=[PRIMARY])  # validation reads Y only
    return m["gray"][PRIMARY] if "gray" in m else m["y"][PRIMARY]


class Validator:
    """Holds the validation images and their JPEG versions; calling it scores a model."""

    def __init__(self, cfg: ValConfig, device: torch.device):
        self.device, self.qfs = device, list(cfg.qfs)
        sources = []
        if cfg.dataset:
            ds = get_dataset(cfg.dataset)
            sources += [(p, ds.load) for p in ds.files]
        for folder in cfg.folders:
            sources += [(p, read_image) for p in list_images([folder])]
        if cfg.max_images:
            sources = sources[: cfg.max_images]
        self.items = []  # (ground truth, {qf: jpeg pixels})
        jpeg_psnr: dict[int, list[float]] = {q: [] for q in self.qfs}
        for path, load in sources:
            gt = load(path)
            jpegs = {q: compress(gt, q).pixels for q in self.qfs}
            self.items.append((gt, jpegs))
            for q in self.qfs:
                jpeg_psnr[q].append(_psnr(gt, jpegs[q]))
        self.jpeg_psnr = {q: float(np.mean(v)) for q, v in jpeg_psnr.items()}

    def __call__(self, model: nn.Module) -> dict:
        was_training = model.training
        model.eval()
        info = ModelInfo(name="validation", pad_multiple=int(getattr(model, "pad_multiple", 1)))
        restorer = TorchRestorer([model], info, device=str(self.device))
        psnr: dict[int, list[float]] = {q: [] for q in self.qfs}
        for gt, jpegs in self.items:
            for q, jpeg in jpegs.items():
                psnr[q].append(_psnr(gt, restorer.restore(jpeg).image))
        model.train(was_training)
        per_qf = {q: float(np.mean(v)) for q, v in psnr.items()}
        return {
            "val_psnr": float(np.mean(list(per_qf.values()))),
            "val_jpeg_psnr": float(np.mean(list(self.jpeg_psnr.values()))),
            "val_psnr_qf": {str(q): v for q, v in per_qf.items()},
            "val_jpeg_psnr_qf": {str(q): v for q, v in self.jpeg_psnr.items()},
        }
