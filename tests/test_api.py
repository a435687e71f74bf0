"""The library API: ``cirbench.evaluate`` gives the published JPEG rows, ``cirbench.score`` gives exactly an image's
record, and both accept what users hand them (names, uint8 arrays, float tensors)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import cirbench
from cirbench.errors import ConfigError
from cirbench.images import read_image


@pytest.fixture(scope="module")
def classic5_q10(data_root):
    return cirbench.evaluate(models=["jpeg"], datasets=["classic5"], qf=[10], data_root=data_root)


def test_evaluate_gives_fbcnn_classic5_jpeg_row(classic5_q10):
    """FBCNN's Table (Classic5, QF 10, JPEG): 27.82 dB PSNR, 0.760 SSIM, 25.21 dB PSNR-B on the gray images."""
    df = classic5_q10.records
    gray = df[df["space"] == "gray"]
    assert len(gray) == 5 and set(df["space"]) == {"gray"}
    assert round(gray["psnr"].mean(), 2) == 27.82
    assert round(gray["ssim"].mean(), 3) == 0.760
    assert round(gray["psnrb"].mean(), 2) == 25.21
    info = classic5_q10.run_info
    assert [m["name"] for m in info["metrics"]] == ["psnr", "ssim", "psnrb"] and info["protocol"]["name"] == "adhoc"
    assert classic5_q10.out.is_dir() and "27.82" in classic5_q10.report("md")


def test_score_equals_the_record(classic5_q10, data_root):
    df = classic5_q10.records
    for rec in df.to_dict("records"):
        gt = read_image(data_root / "classic5" / rec["image"])
        buf = io.BytesIO()
        Image.fromarray(gt).save(buf, "JPEG", quality=10)  # the JPEG the model saw (Pillow, as cirbench)
        jp = np.asarray(Image.open(buf))
        got = cirbench.score(jp, gt)
        for m in ("psnr", "ssim", "psnrb"):
            assert abs(got[m] - rec[m]) <= 1e-9, (rec["image"], m)


def test_temporary_run_lives_with_its_results():
    res = cirbench.evaluate(["jpeg"], datasets="samples", qf=20)
    out = res.out
    assert out.is_dir() and len(res.records) == 3 * 4  # 3 colour images x 4 spaces
    assert set(res.records["space"]) == {"y", "y-float", "y-full", "rgb"}
    csv = res.report("csv")
    assert csv.splitlines()[0].startswith("model,setting,dataset,degradation,qf,space,n_images,n_expected,psnr,ssim,"
                                          "psnrb")
    del res
    import gc

    gc.collect()
    assert not out.exists()  # the temporary folder went with the Results


def test_score_colour_spaces_and_tensors():
    gt = skimage.data.astronaut()[:128, :96]
    buf = io.BytesIO()
    Image.fromarray(gt).save(buf, "JPEG", quality=10)
    jp = np.asarray(Image.open(buf))
    every = cirbench.score(jp, gt)
    assert set(every) == {"y", "y-float", "y-full", "rgb"} and set(every["y"]) == {"psnr", "ssim", "psnrb"}
    assert cirbench.score(jp, gt, space="rgb") == every["rgb"]
    assert cirbench.score(jp, gt, metrics="psnr", space="y") == {"psnr": every["y"]["psnr"]}
    # A model's float output in [0, 1] is rounded as the benchmark rounds it (x255, round half to even).
    t = torch.from_numpy(jp.copy()).permute(2, 0, 1).double() / 255.0
    t_gt = torch.from_numpy(gt.copy()).permute(2, 0, 1)[None].float() / 255.0
    assert cirbench.score(t, t_gt, space="y") == every["y"]
    noisy = (t + 0.4 / 255).clamp(0, 1)  # below half a step: rounds back to the same pixels
    assert cirbench.score(noisy[None], gt, space="rgb") == every["rgb"]


def test_score_refuses_what_it_cannot_score():
    g = np.zeros((16, 16), np.uint8)
    with pytest.raises(ConfigError, match="batch of 2"):
        cirbench.score(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
    with pytest.raises(ConfigError, match="float64 array"):
        cirbench.score(g.astype(float), g)
    with pytest.raises(ConfigError, match="does not apply to a gray image"):
        cirbench.score(g, g, space="rgb")
    with pytest.raises(ConfigError, match="differ in shape"):
        cirbench.score(g, np.zeros((16, 17), np.uint8))
