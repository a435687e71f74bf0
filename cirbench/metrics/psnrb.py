"""PSNR-B (Yim & Bovik): 10 log10(255^2 / (MSE + BEF)), with the MSE of the space and the blocking-effect factor
(BEF) of the *restored* image, FBCNN's float normalisers; for ``rgb`` the BEF of the restored image's rounded Y,
as FBCNN's colour script."""

from __future__ import annotations

import math

import torch

from .spaces import SPACES, Pair, rgb_to_y
from .spec import register

__all__ = ["bef", "psnrb"]


def bef(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Blocking-effect factor of single-channel images (B,1,H,W), with FBCNN's float normalisers."""
    if x.shape[1] != 1:
        raise ValueError(f"BEF is defined on one channel, got {x.shape[1]}")
    h, w = x.shape[-2:]
    dh = (x[..., :, 1:] - x[..., :, :-1]) ** 2  # column c vs c+1, c = 0..w-2
    dv = (x[..., 1:, :] - x[..., :-1, :]) ** 2  # row r vs r+1, r = 0..h-2
    col_b = torch.zeros(w - 1, dtype=torch.bool, device=x.device)
    col_b[block - 1 :: block] = True
    row_b = torch.zeros(h - 1, dtype=torch.bool, device=x.device)
    row_b[block - 1 :: block] = True
    d_b = dh[..., col_b].flatten(1).sum(1) + dv[..., row_b, :].flatten(1).sum(1)
    d_bc = dh[..., ~col_b].flatten(1).sum(1) + dv[..., ~row_b, :].flatten(1).sum(1)
    # True division even when w or h is not a multiple of the block size, as the reference does.
    n_hb = h * (w / block - 1)
    n_vb = w * (h / block - 1)
    n_hbc = h * (w - 1) - n_hb
    n_vbc = w * (h - 1) - n_vb
    d_b = d_b / (n_hb + n_vb)
    d_bc = d_bc / (n_hbc + n_vbc)
    eta = math.log2(block) / math.log2(min(h, w))
    return torch.where(d_b > d_bc, eta * (d_b - d_bc), torch.zeros_like(d_b))


def psnrb(gt: torch.Tensor, restored: torch.Tensor, restored_y: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR-B of (B,C,H,W) float64 batches on 0..255, BEF of the restored image (its Y for RGB data)."""
    if restored_y is None:
        restored_y = restored if restored.shape[1] == 1 else rgb_to_y(restored)
    return 10 * torch.log10(255.0**2 / (((gt - restored) ** 2).flatten(1).mean(1) + bef(restored_y)))


@register(name="psnrb", label="PSNR-B", unit="dB", decimals=2, spaces=SPACES, batched=True, device="any",
          convention="bef-of-restored (Y for rgb)")
def _psnrb(pair: Pair) -> torch.Tensor:
    b = pair.shared(("bef", pair.bef_space), lambda: bef(pair.bef_source))
    return 10 * torch.log10(255.0**2 / (pair.mse + b))
