"""Speed of the harness's own work: metrics, JPEG and tiled inference (``nox -s bench``).

The metrics are also timed against a plain float64 numpy + OpenCV implementation of the same
conventions (KAIR's ``calculate_ssim``, FBCNN's PSNR-B), measured in the same run so the ratio holds
on any machine; the two must agree to 1e-9 or the comparison is meaningless.
"""


import pytest
import torch
from reference_metrics import ref_image_metrics
from torch import nn

from cirbench import jpeg
from cirbench.metrics import image_metrics
from cirbench.zoo import ModelInfo
from cirbench.zoo.inference import InferenceSettings, TorchRestorer


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
