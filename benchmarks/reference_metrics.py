"""Reference metrics for the benchmarks: float64 numpy + OpenCV's separable filter, written from the published
scripts (KAIR's ``calculate_ssim``, FBCNN's PSNR-B). Timed beside ``cirbench.metrics`` in the same run so the
ratio holds on any machine; the two must agree to 1e-9 or the comparison is meaningless."""

import math

import cv2
import numpy as np

_Y = np.array([65.481, 128.553, 24.966])


def _ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """KAIR's calculate_ssim (valid region of an 11x11 sigma-1.5 Gaussian), the filter applied separably."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)

    def filt(x):
        return cv2.sepFilter2D(x, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT_101)[5:-5, 5:-5]

    mu1, mu2 = filt(a), filt(b)
    s11, s22, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
    return float(np.mean((2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))))


def _ref_bef(y: np.ndarray, block: int = 8) -> float:
    h, w = y.shape
    dh, dv = (y[:, 1:] - y[:, :-1]) ** 2, (y[1:, :] - y[:-1, :]) ** 2
    cb, rb = np.zeros(w - 1, bool), np.zeros(h - 1, bool)
    cb[block - 1 :: block], rb[block - 1 :: block] = True, True
    d_b = dh[:, cb].sum() + dv[rb, :].sum()
    d_bc = dh[:, ~cb].sum() + dv[~rb, :].sum()
    n_hb, n_vb = h * (w / block - 1), w * (h / block - 1)
    d_b /= n_hb + n_vb
    d_bc /= h * (w - 1) - n_hb + w * (h - 1) - n_vb
    return math.log2(block) / math.log2(min(h, w)) * (d_b - d_bc) if d_b > d_bc else 0.0


def ref_image_metrics(gt: np.ndarray, restored: np.ndarray) -> dict[str, dict[str, float]]:
    """PSNR / SSIM / PSNR-B in y and rgb spaces, float64 numpy + cv2.sepFilter2D (KAIR / FBCNN conventions)."""
    g, r = gt.astype(np.float64), restored.astype(np.float64)
    gy, ry = np.round(g @ _Y / 255.0 + 16.0), np.round(r @ _Y / 255.0 + 16.0)
    bef_y = _ref_bef(ry)
    mse_y, mse_rgb = np.mean((gy - ry) ** 2), np.mean((g - r) ** 2)
    return {
        "y": {"psnr": 10 * math.log10(255.0**2 / mse_y), "ssim": _ref_ssim(gy, ry),
              "psnrb": 10 * math.log10(255.0**2 / (mse_y + bef_y))},
        "rgb": {"psnr": 10 * math.log10(255.0**2 / mse_rgb),
                "ssim": float(np.mean([_ref_ssim(g[..., c].copy(), r[..., c].copy()) for c in range(3)])),
                "psnrb": 10 * math.log10(255.0**2 / (mse_rgb + bef_y))},
    }
