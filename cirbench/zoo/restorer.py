"""The interface every restorer meets, below both the factory and the inference engine.

A *restorer* turns one compressed uint8 image into a restored uint8 image. Anything with::

    info: ModelInfo
    def restore(self, img: np.ndarray, qf: int | None) -> Restored

is one (``qf`` is given only in non-blind protocols).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["ModelInfo", "Restored", "Restorer", "JpegBaseline", "Target"]


@dataclass
class ModelInfo:
    """What the harness needs to know about a model."""

    name: str
    channels: int = 3  # what the network takes: 3 (RGB; gray data is replicated) or 1
    pad_multiple: int = 1  # input H and W must be multiples of this
    pad_mode: str = "reflect"  # "reflect", "replicate", "symmetric", "official32" (PromptCIR's +32 rule), "none"
    takes_qf: bool = False  # accepts the quality factor (non-blind protocols pass it)
    params: int | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)  # provenance: card file, weights sha256, settings, profile...


@dataclass
class Restored:
    image: np.ndarray  # uint8, same shape as the input
    seconds: float = 0.0  # model time
    extras: dict = field(default_factory=dict)  # e.g. {"qf_pred": 31.2}
    nonfinite: bool = False  # the raw output held NaN/Inf


@dataclass(frozen=True)
class Target:
    """What an image is: passed to restorers that set ``wants_target`` (released outputs are looked up by it,
    not computed)."""

    dataset: str
    image: str  # file name in the dataset
    degradation: str  # "jpeg" or "double-q{QF1}-s{dy}x{dx}"
    qf: int
    qf1: int | None = None


class Restorer(Protocol):
    info: ModelInfo

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored: ...


class JpegBaseline:
    """The zero baseline: the compressed image, unchanged."""

    def __init__(self):
        self.info = ModelInfo(name="jpeg", channels=0, description="the JPEG-compressed input itself", params=0)

    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored:
        return Restored(img)
