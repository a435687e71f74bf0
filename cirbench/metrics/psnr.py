"""PSNR in dB over all channels and pixels of a space, on uint8-rounded images; +inf for identical images."""

from __future__ import annotations

import torch

from .spaces import SPACES, Pair
from .spec import register

__all__ = ["psnr"]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR per image of (B,C,H,W) float64 batches on 0..255."""
    return 10 * torch.log10(255.0**2 / ((x - y) ** 2).flatten(1).mean(1))


@register(name="psnr", label="PSNR", unit="dB", decimals=2, spaces=SPACES, batched=True, device="any",
          convention="10 log10(255^2 / MSE)")
def _psnr(pair: Pair) -> torch.Tensor:
    return 10 * torch.log10(255.0**2 / pair.mse)
