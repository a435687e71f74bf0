"""PSNR, SSIM and PSNR-B as the JPEG-restoration literature computes them, in every convention in use.

Functional and batched: every metric takes float64 tensors of shape (B, C, H, W) on the 0..255
scale, made from uint8-rounded images, and returns one value per image, shape (B,).

Spaces (spec §3.2; see docs/conventions.md for who uses which), reproduced exactly because
published tables depend on them:

* ``y``       — BT.601 studio-range luma, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded
  half to even, as KAIR/FBCNN/SwinIR's ``rgb2ycbcr(only_y=True)`` on uint8 input. The default.
* ``y-float`` — the same luma kept in float64, as BasicSR's ``test_y_channel`` (HAT, GRL, ...).
* ``y-full``  — full-range BT.601 luma 0.299 R + 0.587 G + 0.114 B, rounded as OpenCV's 8-bit
  ``cvtColor(RGB2GRAY)``: (9798 R + 19235 G + 3735 B + 2^14) >> 15. Pillow's ``convert("L")``
  rounds (19595 R + 38470 G + 7471 B + 2^15) >> 16 and differs by 1 on 21745 of the 2^24 colours.
* ``rgb``     — PSNR and SSIM over the three RGB channels (SSIM averaged per channel); PSNR-B uses the
  RGB MSE but the blocking-effect factor (BEF) of the restored image's ``y``, as FBCNN's colour script.
* ``gray``    — single-channel data, the same formulas on that channel.

PSNR-B is 10 log10(255^2 / (MSE + BEF)) with the MSE of the space and the BEF of the restored image
in that space. SSIM is Wang et al.'s MATLAB form: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, L = 255, averaged over the valid region (5-pixel trim). No border is cropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SPACES",
    "COLOUR_SPACES",
    "CONVENTIONS",
    "Y_CONVENTION",
    "spaces_of",
    "rgb_to_y",
    "rgb_to_y_full",
    "luma",
    "psnr",
    "ssim",
    "bef",
    "psnrb",
    "to_tensor",
    "compute",
    "image_metrics",
]

SPACES = ("y", "y-float", "y-full", "rgb", "gray")
COLOUR_SPACES = ("y", "y-float", "y-full", "rgb")  # what a colour image is scored in; a gray one: ("gray",)
Y_CONVENTION = "bt601-studio-rounded"  # recorded in results so tables say which Y they used
CONVENTIONS = {  # one short name per space, for captions and notes
    "y": Y_CONVENTION,
    "y-float": "bt601-studio-float64",
    "y-full": "bt601-full-range-rounded (OpenCV RGB2GRAY)",
    "rgb": "rgb-3-channels (PSNR-B: BEF of the rounded studio Y)",
    "gray": "single channel",
}
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_FULL_WEIGHTS = (9798, 19235, 3735)  # OpenCV's 15-bit fixed-point 0.299 / 0.587 / 0.114 (they sum to 2^15)
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_WINDOW = _gaussian_1d()


def rgb_to_y(rgb: np.ndarray | torch.Tensor, rounded: bool = True):
    """BT.601 luma (16..235) of RGB uint8 data; channels last for numpy, (B,3,H,W) for tensors.

    ``rounded=True`` is KAIR's ``rgb2ycbcr(only_y=True)`` on uint8 input (round half to even,
    as ``numpy.round``).
    """
    if isinstance(rgb, torch.Tensor):
        # (R w0 + G w1 + B w2) / 255 + 16, accumulated in place: bit for bit the value of
        # ``(rgb * w).sum(1) / 255 + 16`` at a quarter of the time (no 3-channel temporaries).
        rgb = rgb.to(torch.float64)
        w0, w1, w2 = _Y_WEIGHTS
        y = rgb[:, 0:1] * w0
        y += rgb[:, 1:2] * w1
        y += rgb[:, 2:3] * w2
        y /= 255.0
        y += 16.0
        return y.round_() if rounded else y
    y = np.dot(rgb.astype(np.float64), np.array(_Y_WEIGHTS)) / 255.0 + 16.0
    return np.round(y).astype(np.uint8) if rounded else y


def rgb_to_y_full(rgb: np.ndarray | torch.Tensor):
    """Full-range BT.601 luma of RGB uint8 data, rounded as OpenCV's 8-bit ``cvtColor(RGB2GRAY)``;
    channels last for numpy (uint8 out), (B,3,H,W) for tensors (float64 integers out)."""
    w0, w1, w2 = _FULL_WEIGHTS
    if isinstance(rgb, torch.Tensor):
        # Integers below 2^23 throughout: float64 holds them exactly, and /2^15 then floor is the shift.
        rgb = rgb.to(torch.float64)
        y = rgb[:, 0:1] * w0
        y += rgb[:, 1:2] * w1
        y += rgb[:, 2:3] * w2
        y += 1 << 14
        return y.div_(1 << 15).floor_()
    x = rgb.astype(np.int32)
    return ((x[..., 0] * w0 + x[..., 1] * w1 + x[..., 2] * w2 + (1 << 14)) >> 15).astype(np.uint8)


def luma(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """The one-channel image of (B,3,H,W) RGB data in a luma space: ``y``, ``y-float`` or ``y-full``."""
    if space == "y":
        return rgb_to_y(rgb)
    if space == "y-float":
        return rgb_to_y(rgb, rounded=False)
    if space == "y-full":
        return rgb_to_y_full(rgb)
    raise ValueError(f"{space!r} is not a luma space; expected y, y-float or y-full")


def spaces_of(channels: int) -> tuple[str, ...]:
    """The spaces :func:`image_metrics` scores an image of this many channels in."""
    return ("gray",) if channels == 1 else COLOUR_SPACES


def _mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x - y) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over all channels and pixels; +inf for identical images."""
    return 10 * torch.log10(255.0**2 / _mse(x, y))


def _filter_valid(t: torch.Tensor) -> torch.Tensor:
    """Separable 11x11 Gaussian filter over the last two axes, valid region only (non-CPU devices: the CPU
    path is :func:`_ssim_planes_cpu`, OpenCV's float64 ``sepFilter2D`` as KAIR's ``cv2.filter2D``)."""
    n = _WINDOW.numel()
    h, w = t.shape[-2:]
    g = _WINDOW.to(t.device)
    flat = t.reshape(-1, 1, h, w)
    flat = F.conv2d(F.conv2d(flat, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return flat.reshape(*t.shape[:-2], h - n + 1, w - n + 1)


def _ssim_planes_cpu(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`ssim` on CPU, plane by plane in numpy + OpenCV: the same arithmetic in the same order, without
    torch's large float64 temporaries (issue 7: ~3x faster)."""
    import cv2

    g = _WINDOW.numpy()
    r = g.size // 2
    b, c, h, w = x.shape
    xs, ys = x.detach().contiguous().numpy(), y.detach().contiguous().numpy()
    out = np.empty((b, c))

    def filt(p: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(p, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT_101)[r:-r, r:-r]

    for i in range(b):
        for j in range(c):
            p, q = xs[i, j], ys[i, j]
            mu1, mu2 = filt(p), filt(q)
            e11, e22, e12 = filt(p * p), filt(q * q), filt(p * q)
            mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
            num = (2 * mu12 + _SSIM_C1) * (2 * (e12 - mu12) + _SSIM_C2)
            den = (mu1_sq + mu2_sq + _SSIM_C1) * ((e11 - mu1_sq) + (e22 - mu2_sq) + _SSIM_C2)
            out[i, j] = (num / den).mean()
    return torch.from_numpy(out).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MATLAB-style SSIM per image, the mean over channels of the per-channel valid-region means."""
    b, c, h, w = x.shape
    if h < 11 or w < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {h}x{w}")
    if x.device.type == "cpu":
        return _ssim_planes_cpu(x, y)
    # The five local statistics of every channel go through one separable valid filter.
    stack = _filter_valid(torch.stack([x, y, x * x, y * y, x * y], 1))
    mu1, mu2, e11, e22, e12 = stack.unbind(1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s11, s22, s12 = e11 - mu1_sq, e22 - mu2_sq, e12 - mu12
    num = (2 * mu12 + _SSIM_C1) * (2 * s12 + _SSIM_C2)
    den = (mu1_sq + mu2_sq + _SSIM_C1) * (s11 + s22 + _SSIM_C2)
    return (num / den).flatten(2).mean(2).mean(1)


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
    """PSNR-B = 10 log10(255^2 / (MSE + BEF)), BEF of the restored image (its Y for RGB data)."""
    if restored_y is None:
        restored_y = restored if restored.shape[1] == 1 else rgb_to_y(restored)
    return 10 * torch.log10(255.0**2 / (_mse(gt, restored) + bef(restored_y)))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC (or a stack BxHxWxC) to a contiguous float64 (B,C,H,W) copy.

    Contiguous planes: the metrics then never copy a channel-interleaved layout again (issue 7)."""
    if img.ndim == 2:
        img = img[None, None]
    elif img.ndim == 3:
        img = img.transpose(2, 0, 1)[None]
    else:
        img = img.transpose(0, 3, 1, 2)
    return torch.tensor(np.ascontiguousarray(img), dtype=torch.float64)  # a copy: inputs may be read-only


def compute(gt: torch.Tensor, restored: torch.Tensor, space: str) -> dict[str, torch.Tensor]:
    """All three metrics of a batch in one metric space; inputs (B,C,H,W) float64 on 0..255."""
    if gt.shape != restored.shape:
        raise ValueError(f"shape mismatch: ground truth {tuple(gt.shape)} vs restored {tuple(restored.shape)}")
    if space not in SPACES:
        raise ValueError(f"unknown metric space {space!r}; expected one of {SPACES}")
    if space in COLOUR_SPACES and gt.shape[1] != 3:
        raise ValueError(f"the {space!r} space needs RGB input")
    if space == "rgb":
        return _all(gt, restored, rgb_to_y(restored))
    if space == "gray":
        if gt.shape[1] != 1:
            raise ValueError("the 'gray' space needs single-channel input")
        return _all(gt, restored, restored)
    gt, restored = luma(gt, space), luma(restored, space)
    return _all(gt, restored, restored)


def _all(gt: torch.Tensor, restored: torch.Tensor, restored_y: torch.Tensor,
         bef_y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """:func:`psnr`, :func:`ssim` and :func:`psnrb` with the MSE (and optionally the BEF) computed once."""
    mse = _mse(gt, restored)
    bef_y = bef(restored_y) if bef_y is None else bef_y
    return {"psnr": 10 * torch.log10(255.0**2 / mse), "ssim": ssim(gt, restored),
            "psnrb": 10 * torch.log10(255.0**2 / (mse + bef_y))}


def image_metrics(gt: np.ndarray, restored: np.ndarray,
                  spaces: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one uint8 image pair in every space that applies (:func:`spaces_of`), or in those of
    ``spaces`` that apply. Returns {space: {"psnr", "ssim", "psnrb"}}."""
    if gt.dtype != np.uint8 or restored.dtype != np.uint8:
        raise TypeError("metrics are computed on uint8-rounded images")
    g, r = to_tensor(gt), to_tensor(restored)
    if g.shape != r.shape:
        raise ValueError(f"shape mismatch: ground truth {tuple(g.shape)} vs restored {tuple(r.shape)}")
    wanted = spaces_of(g.shape[1])
    if spaces is not None:
        unknown = [s for s in spaces if s not in SPACES]
        if unknown:
            raise ValueError(f"unknown metric spaces {unknown}; expected some of {SPACES}")
        wanted = tuple(s for s in wanted if s in set(spaces))
    per_space = {}
    if g.shape[1] == 1:
        if wanted:
            per_space["gray"] = _all(g, r, r)
    else:  # as compute(.., space), with the restored image's rounded Y (and its BEF) made once for y and rgb
        ry = rgb_to_y(r) if {"y", "rgb"} & set(wanted) else None
        bef_y = bef(ry) if ry is not None else None
        for space in wanted:
            if space == "rgb":
                per_space[space] = _all(g, r, ry, bef_y)
            elif space == "y":
                per_space[space] = _all(rgb_to_y(g), ry, ry, bef_y)
            else:
                lr = luma(r, space)
                per_space[space] = _all(luma(g, space), lr, lr)
    return {space: {k: float(v[0]) for k, v in vals.items()} for space, vals in per_space.items()}
