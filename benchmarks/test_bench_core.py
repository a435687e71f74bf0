"""Speed of the harness's own work: metrics, JPEG and tiled inference (``nox -s bench``).

The metrics are also timed against a plain float64 numpy + OpenCV implementation of the same
conventions (KAIR's ``calculate_ssim``, FBCNN's PSNR-B), measured in the same run so the ratio holds
on any machine; the two must agree to 1e-9 or the comparison is meaningless.
"""

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cirbench import jpeg
from cirbench.inference import InferenceSettings, TorchRestorer
from cirbench.metrics import image_metrics
from cirbench.models import ModelInfo

# --- reference metrics: float64 numpy + OpenCV, written from the published scripts ------------------


def ref_y(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0)


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a - b) ** 2))


def ref_ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T
    mu1, mu2 = (cv2.filter2D(x, -1, win)[5:-5, 5:-5] for x in (a, b))
    s11 = cv2.filter2D(a * a, -1, win)[5:-5, 5:-5] - mu1**2
    s22 = cv2.filter2D(b * b, -1, win)[5:-5, 5:-5] - mu2**2
    s12 = cv2.filter2D(a * b, -1, win)[5:-5, 5:-5] - mu1 * mu2
    return float(np.mean((2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))))


def ref_bef(y: np.ndarray, block: int = 8) -> float:
    h, w = y.shape
    bh, bv = np.arange(block - 1, w - 1, block), np.arange(block - 1, h - 1, block)
    nh, nv = np.setdiff1d(np.arange(w - 1), bh), np.setdiff1d(np.arange(h - 1), bv)
    d_b = ((y[:, bh] - y[:, bh + 1]) ** 2).sum() + ((y[bv, :] - y[bv + 1, :]) ** 2).sum()
    d_bc = ((y[:, nh] - y[:, nh + 1]) ** 2).sum() + ((y[nv, :] - y[nv + 1, :]) ** 2).sum()
    n_hb, n_vb = h * (w / block - 1), w * (h / block - 1)
    d_b /= n_hb + n_vb
    d_bc /= h * (w - 1) - n_hb + w * (h - 1) - n_vb
    return math.log2(block) / math.log2(min(h, w)) * (d_b - d_bc) if d_b > d_bc else 0.0


def ref_image_metrics(gt: np.ndarray, restored: np.ndarray) -> dict[str, dict[str, float]]:
    g, r = gt.astype(np.float64), restored.astype(np.float64)
    gy, ry = ref_y(gt), ref_y(restored)
    bef_y = ref_bef(ry)
    mse_y, mse_rgb = np.mean((gy - ry) ** 2), np.mean((g - r) ** 2)
    return {
        "y": {"psnr": ref_psnr(gy, ry), "ssim": ref_ssim_plane(gy, ry),
              "psnrb": 10 * math.log10(255.0**2 / (mse_y + bef_y))},
        "rgb": {"psnr": ref_psnr(g, r),
                "ssim": float(np.mean([ref_ssim_plane(g[..., c], r[..., c]) for c in range(3)])),
                "psnrb": 10 * math.log10(255.0**2 / (mse_rgb + bef_y))},
    }


@pytest.mark.benchmark(group="metrics 768x512")
def test_image_metrics(benchmark, live1_pair):
    out = benchmark(image_metrics, *live1_pair)
    assert set(out) == {"y", "rgb"}


@pytest.mark.benchmark(group="metrics 768x512")
def test_reference_metrics_numpy_opencv(benchmark, live1_pair):
    ref = benchmark(ref_image_metrics, *live1_pair)
    ours = image_metrics(*live1_pair)
    for space in ref:
        for metric, v in ref[space].items():
            assert ours[space][metric] == pytest.approx(v, abs=1e-9), (space, metric)


@pytest.mark.benchmark(group="jpeg 768x512")
@pytest.mark.parametrize("qf", [10, 40])
def test_jpeg_compress(benchmark, live1_pair, qf):
    out = benchmark(jpeg.compress, live1_pair[0], qf)
    assert out.pixels.shape == live1_pair[0].shape


class SmallNet(nn.Module):
    """A few cheap convolutions: enough work that tiling costs show, little enough to time quickly."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.mark.benchmark(group="tiling 768x512 small conv net")
@pytest.mark.parametrize("tile", [None, 256, 128], ids=["whole", "tile256", "tile128"])
def test_tiling_overhead(benchmark, live1_pair, small_net, tile):
    # The same net whole and in overlapping tiles (overlap 32): the ratio is the tiling overhead.
    info = ModelInfo(name="small", pad_multiple=8)
    restorer = TorchRestorer([small_net], info, InferenceSettings(tile=tile, overlap=32))
    out = benchmark(restorer.restore, live1_pair[1])
    assert out.image.shape == live1_pair[1].shape
