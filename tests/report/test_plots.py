"""Figures from the fixed records: every kind is written as a readable PNG and a PDF."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.records import gt_image_path, iter_records, output_image_path
from cirbench.report.plots import _window, make_plots

RUN = Path(__file__).parents[1] / "data" / "records_small"
LIT = Path(__file__).parents[1] / "data" / "literature_small.csv"


def _save_outputs(run: Path) -> None:
    """What ``cirbench run --save-images`` writes for the records at QF 10: ground truth, JPEG and fbcnn
    outputs (swinir saved nothing: its panel is left out)."""
    yy, xx = np.mgrid[0:128, 0:160]
    gt = (128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 9.0)).astype(np.uint8)
    noise = {None: 0, "jpeg": 20, "fbcnn": 6}
    for rec in iter_records(run):
        if rec["qf"] != 10:
            continue
        for model, sigma in noise.items():
            img = np.clip(gt + np.random.default_rng(0).normal(0, sigma, gt.shape), 0, 255).astype(np.uint8)
            img = img if rec["dataset"] == "classic5" else np.stack([img, img, img], axis=-1)
            path = (gt_image_path(run, rec["dataset"], "jpeg", rec["image"]) if model is None
                    else output_image_path(run, model, "single", rec["dataset"], "jpeg", 10, rec["image"]))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)


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


def test_plots_with_crops_from_saved_images(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    _save_outputs(run)
    paths = make_plots(run, tmp_path / "plots", metrics=("psnr", "ssim"))
    names = {p.name for p in paths}
    assert {
        "ssim_vs_qf.png",
        "diff_ssim_to_jpeg.pdf",
        "crops_classic5_q10.png",
        "crops_live1_q10.png",
    } <= names
    _check(paths)
    with Image.open(tmp_path / "plots" / "crops_classic5_q10.png") as im:
        three_panels = im.width  # ground truth, JPEG, fbcnn (swinir saved no image)
    assert three_panels > 2.2 * im.height  # two panels would be about 1.6 times as wide as high


def test_no_saved_images_no_crops(tmp_path):
    paths = make_plots(RUN, tmp_path, metrics=("psnr",))
    assert not [p for p in paths if p.name.startswith("crops_")]


def test_window_finds_texture():
    img = np.zeros((64, 64), np.uint8)
    img[32:, 32:] = np.indices((32, 32)).sum(0) % 2 * 255  # a checkerboard in one corner
    assert _window(img, 32) == (32, 32)


def test_report_plots_follow_the_report_filters(tmp_path):
    """`cirbench report --plots` draws what the tables show: --datasets, --qf and --models filter the figures
    too (they were once passed to the tables only, so the plots showed every dataset)."""
    from cirbench.cli import main

    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    _save_outputs(run)
    out = tmp_path / "plots"
    assert main(["report", str(run), "--plots", str(out), "--datasets", "classic5", "--models", "fbcnn"]) == 0
    assert (out / "crops_classic5_q10.png").is_file() and not (out / "crops_live1_q10.png").exists()
