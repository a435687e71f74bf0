"""SSIM in Wang et al.'s MATLAB form, as KAIR computes it: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, L = 255, averaged over the valid region (5-pixel trim), the mean over channels. No border crop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .spaces import SPACES, Pair, workspace
from .spec import register

__all__ = ["ssim"]

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_WINDOW = _gaussian_1d()


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
    """:func:`ssim` on CPU, plane by plane in OpenCV: the float64 ``sepFilter2D`` (KAIR's ``cv2.filter2D`` with the
    separable window), then the map in OpenCV's arithmetic (vectorised and threaded: a third of NumPy's time here).
    Four filters, not five: E[x^2] and E[y^2] enter only as a sum, and filtering is linear, so E[x^2 + y^2] is
    filtered once (equal to the reference to ~1e-15). Every array is a reused :data:`workspace` buffer, and the
    work after the filters runs on the valid region."""
    import cv2

    g = _WINDOW.numpy()
    r = g.size // 2
    b, c, h, w = x.shape
    xs, ys = x.detach().contiguous().numpy(), y.detach().contiguous().numpy()
    out = np.empty((b, c))
    full, valid = (h, w), (h - 2 * r, w - 2 * r)
    mu1, mu2, e_sum, e12, prod = (workspace(f"ssim-{k}", full) for k in ("mu1", "mu2", "esum", "e12", "prod"))
    t1, t2, num2, den2 = (workspace(f"ssim-{k}", valid) for k in ("t1", "t2", "num2", "den2"))

    def filt(p: np.ndarray, dst: np.ndarray) -> np.ndarray:
        cv2.sepFilter2D(p, cv2.CV_64F, g, g, dst=dst, borderType=cv2.BORDER_REFLECT_101)
        return dst[r:-r, r:-r]

    for i in range(b):
        for j in range(c):
            p, q = xs[i, j], ys[i, j]
            m1, m2 = filt(p, mu1), filt(q, mu2)
            cv2.multiply(p, p, dst=prod)
            cv2.accumulateSquare(q, prod)  # x^2 + y^2
            s = filt(prod, e_sum)
            s12 = filt(cv2.multiply(p, q, dst=prod), e12)
            cv2.multiply(m1, m2, dst=t1)  # mu1 mu2
            cv2.multiply(m1, m1, dst=t2)
            cv2.accumulateSquare(m2, t2)  # mu1^2 + mu2^2
            cv2.addWeighted(s12, 2.0, t1, -2.0, _C2, dst=num2)  # 2 sigma12 + C2
            cv2.addWeighted(s, 1.0, t2, -1.0, _C2, dst=den2)  # sigma1^2 + sigma2^2 + C2
            cv2.addWeighted(t1, 2.0, t1, 0.0, _C1, dst=t1)  # 2 mu1 mu2 + C1
            cv2.add(t2, _C1, dst=t2)  # mu1^2 + mu2^2 + C1
            cv2.multiply(t1, num2, dst=t1)
            cv2.multiply(t2, den2, dst=t2)
            cv2.divide(t1, t2, dst=t1)
            out[i, j] = cv2.mean(t1)[0]
    return torch.from_numpy(out).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, engine: str = "numpy") -> torch.Tensor:
    """MATLAB-style SSIM per image, the mean over channels of the per-channel valid-region means. On the CPU the
    NumPy engine computes it unless ``engine="torch"`` (the batched path every other device takes)."""
    b, c, h, w = x.shape
    if h < 11 or w < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {h}x{w}")
    if x.device.type == "cpu" and engine == "numpy":
        return _ssim_planes_cpu(x, y)
    # The five local statistics of every channel go through one separable valid filter.
    stack = _filter_valid(torch.stack([x, y, x * x, y * y, x * y], 1))
    mu1, mu2, e11, e22, e12 = stack.unbind(1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s11, s22, s12 = e11 - mu1_sq, e22 - mu2_sq, e12 - mu12
    num = (2 * mu12 + _C1) * (2 * s12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (s11 + s22 + _C2)
    return (num / den).flatten(2).mean(2).mean(1)


# The tolerance is a regression check's, not a printed digit's: SSIM moves ~1e-5 with thread count.
@register(name="ssim", label="SSIM", unit="", decimals=4, spaces=SPACES, batched=True, device="any",
          convention="gaussian11-sigma1.5-valid", tolerance=1e-4)
def _ssim(pair: Pair) -> torch.Tensor:
    return ssim(pair.gt, pair.out, pair.engine)
