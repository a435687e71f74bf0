"""PSNR-B (Yim & Bovik): 10 log10(255^2 / (MSE + BEF)), with the MSE of the space and the blocking-effect factor
(BEF) of the *restored* image, FBCNN's float normalisers; for ``rgb`` the BEF of the restored image's rounded Y,
as FBCNN's colour script."""

from __future__ import annotations

import math

import numpy as np
import torch

from .spaces import SPACES, Pair, rgb_to_y, workspace
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


def _bef_numpy(x: np.ndarray, block: int = 8) -> float:
    """:func:`bef` of one HxW float64 plane in NumPy: per column and per row sums of squared neighbour
    differences, each formed once (exact on the integer planes of y, y-full and gray, as FBCNN's sums are)."""
    h, w = x.shape
    dh = np.subtract(x[:, 1:], x[:, :-1], out=workspace("bef-h", (h, w - 1)))
    dh *= dh
    cols = dh.sum(axis=0)  # column c vs c+1, c = 0..w-2
    dv = np.subtract(x[1:], x[:-1], out=workspace("bef-v", (h - 1, w)))
    dv *= dv
    rows = dv.sum(axis=1)  # row r vs r+1, r = 0..h-2
    b_cols, b_rows = cols[block - 1 :: block].sum(), rows[block - 1 :: block].sum()
    d_b, d_bc = b_cols + b_rows, (cols.sum() - b_cols) + (rows.sum() - b_rows)
    n_hb, n_vb = h * (w / block - 1), w * (h / block - 1)
    d_b = d_b / (n_hb + n_vb)
    d_bc = d_bc / ((h * (w - 1) - n_hb) + (w * (h - 1) - n_vb))
    return math.log2(block) / math.log2(min(h, w)) * (d_b - d_bc) if d_b > d_bc else 0.0


def _bef(pair: Pair) -> torch.Tensor:
    if pair.engine == "numpy":
        src = pair.bef_source.numpy()
        return torch.tensor([_bef_numpy(src[i, 0]) for i in range(src.shape[0])], dtype=torch.float64)
    return bef(pair.bef_source)


def psnrb(gt: torch.Tensor, restored: torch.Tensor, restored_y: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR-B of (B,C,H,W) float64 batches on 0..255, BEF of the restored image (its Y for RGB data)."""
    if restored_y is None:
        restored_y = restored if restored.shape[1] == 1 else rgb_to_y(restored)
    return 10 * torch.log10(255.0**2 / (((gt - restored) ** 2).flatten(1).mean(1) + bef(restored_y)))


@register(name="psnrb", label="PSNR-B", unit="dB", decimals=2, spaces=SPACES, batched=True, device="any",
          convention="bef-of-restored (Y for rgb)")
def _psnrb(pair: Pair) -> torch.Tensor:
    b = pair.shared(("bef", pair.bef_space), lambda: _bef(pair))
    return 10 * torch.log10(255.0**2 / (pair.mse + b))
