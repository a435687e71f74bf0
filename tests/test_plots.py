"""Figures from the fixed records: every kind is written as a readable PNG and a PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.plots import _window, make_plots

RUN = Path(__file__).parent / "data" / "records_small"
LIT = Path(__file__).parent / "data" / "literature_small.csv"


def _provider(calls):
    yy, xx = np.mgrid[0:128, 0:160]
    gt = (128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 9.0)).astype(np.uint8)
    noise = {None: 0, "jpeg": 20, "fbcnn": 6}  # swinir: no output, its panel is left out

    def provide(dataset, image, degradation, qf, model):
        calls.append((dataset, image, degradation, qf, model))
        if model not in noise:
            return None
        img = np.clip(gt + np.random.default_rng(0).normal(0, noise[model], gt.shape), 0, 255).astype(
            np.uint8
        )
        return img if dataset == "classic5" else np.stack([img, img, img], axis=-1)

    return provide


def _check(paths):
    for p in paths:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.width > 100 and im.height > 100
        else:
            assert p.read_bytes()[:5] == b"%PDF-"


def test_plots_without_crops(tmp_path):
    paths = make_plots(RUN, tmp_path, published=True, published_path=LIT)
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{e}" for n in ("psnr_vs_qf", "diff_psnr_to_jpeg") for e in ("png", "pdf")
    )
    _check(paths)


def test_plots_with_crops(tmp_path):
    calls = []
    paths = make_plots(RUN, tmp_path, crop_provider=_provider(calls), metrics=("psnr", "ssim"))
    names = {p.name for p in paths}
    assert {
        "ssim_vs_qf.png",
        "diff_ssim_to_jpeg.pdf",
        "crops_classic5_q10.png",
        "crops_live1_q10.png",
    } <= names
    _check(paths)
    # crops are taken at the lowest QF, of the image where a model gains most over jpeg
    assert {c[3] for c in calls} == {10} and {c[4] for c in calls} == {None, "jpeg", "fbcnn", "swinir"}


def test_window_finds_texture():
    img = np.zeros((64, 64), np.uint8)
    img[32:, 32:] = np.indices((32, 32)).sum(0) % 2 * 255  # a checkerboard in one corner
    assert _window(img, 32) == (32, 32)
