"""The built-in metrics (psnr, ssim, psnrb) in every convention (y, y-float, y-full, rgb, gray) against independent
plain implementations (KAIR/FBCNN style, OpenCV's own gray conversion) and scikit-image, on real images."""


import cv2
import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cirbench import metrics
from cirbench.images import read_image
from cirbench.jpeg import compress
from cirbench.metrics.psnrb import bef
from cirbench.metrics.ssim import ssim


# --- plain reference implementations -------------------------------------------------------------------
def ref_y_float(rgb: np.ndarray) -> np.ndarray:
    """16 + (65.481 R + 128.553 G + 24.966 B) / 255, per pixel, in float64 (BasicSR's test_y_channel)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def ref_y(rgb: np.ndarray) -> np.ndarray:
    """round(16 + (65.481 R + 128.553 G + 24.966 B) / 255), per pixel, as uint8."""
    return np.round(ref_y_float(rgb)).astype(np.uint8)


def ref_y_full(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's own full-range luma of RGB data."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 20 * np.log10(255.0 / np.sqrt(mse))


def _ref_ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """KAIR's ssim(): cv2.filter2D with the 2-D outer Gaussian window, then a 5-pixel trim."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    k = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(k, k.transpose())
    mu1 = cv2.filter2D(a, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(b, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    s1 = cv2.filter2D(a**2, -1, window)[5:-5, 5:-5] - mu1_sq
    s2 = cv2.filter2D(b**2, -1, window)[5:-5, 5:-5] - mu2_sq
    s12 = cv2.filter2D(a * b, -1, window)[5:-5, 5:-5] - mu1_mu2
    m = ((2 * mu1_mu2 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(m.mean())


def ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    if a.ndim == 2:
        return _ref_ssim_plane(a, b)
    return float(np.mean([_ref_ssim_plane(a[..., i], b[..., i]) for i in range(a.shape[2])]))


def ref_bef(img: np.ndarray) -> float:
    """Spec §3.2, with explicit loops over the column / row pairs and float normalisers."""
    x = img.astype(np.float64)
    h, w = x.shape
    d_b = d_bc = 0.0
    for c in range(w - 1):  # horizontal neighbours: column c vs c + 1
        s = float(np.sum((x[:, c] - x[:, c + 1]) ** 2))
        if c % 8 == 7:
            d_b += s
        else:
            d_bc += s
    for r in range(h - 1):  # vertical neighbours: row r vs r + 1
        s = float(np.sum((x[r, :] - x[r + 1, :]) ** 2))
        if r % 8 == 7:
            d_b += s
        else:
            d_bc += s
    n_hb = h * (w / 8 - 1)
    n_vb = w * (h / 8 - 1)
    n_hbc = h * (w - 1) - n_hb
    n_vbc = w * (h - 1) - n_vb
    d_b /= n_hb + n_vb
    d_bc /= n_hbc + n_vbc
    eta = np.log2(8) / np.log2(min(h, w))
    return float(eta * (d_b - d_bc)) if d_b > d_bc else 0.0


def ref_psnrb(gt: np.ndarray, restored: np.ndarray, bef_of: np.ndarray) -> float:
    mse = np.mean((gt.astype(np.float64) - restored.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / (mse + ref_bef(bef_of))))


# --- real images ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs():
    """(ground truth, JPEG) pairs on scikit-image's bundled photographs (CC0 / no known copyright): colour
    600x400, gray 512x512, colour 451x300 (not a multiple of 8) and a 100x75 crop."""
    coffee, camera, chelsea = skimage.data.coffee(), skimage.data.camera(), skimage.data.chelsea()
    crop = np.ascontiguousarray(coffee[33:108, 21:121])
    out = {}
    for name, img in [("coffee", coffee), ("camera", camera), ("chelsea", chelsea), ("crop100x75", crop)]:
        out[name] = (img, compress(img, 10).pixels)
    return out


def _t(img):
    return metrics.to_tensor(img)


def _y(img):
    return ref_y(img) if img.ndim == 3 else img


@pytest.mark.parametrize("name", ["coffee", "camera", "chelsea", "crop100x75"])
def test_against_plain_implementations(pairs, name):
    gt, jp = pairs[name]
    space = "gray" if gt.ndim == 2 else "y"
    got = metrics.compute(_t(gt), _t(jp), space)
    g, j = _y(gt), _y(jp)
    assert float(got["psnr"][0]) == pytest.approx(ref_psnr(g, j), abs=1e-10)
    assert float(got["ssim"][0]) == pytest.approx(ref_ssim(g, j), abs=1e-10)
    assert float(got["psnrb"][0]) == pytest.approx(ref_psnrb(g, j, j), abs=1e-10)
    assert float(bef(_t(j))[0]) == pytest.approx(ref_bef(j), rel=1e-12, abs=1e-12)
    # sanity: JPEG at QF 10 is blocky, so PSNR-B < PSNR
    assert float(got["psnrb"][0]) < float(got["psnr"][0])


@pytest.mark.parametrize("name", ["coffee", "chelsea", "crop100x75"])
def test_rgb_space_against_plain(pairs, name):
    gt, jp = pairs[name]
    got = metrics.compute(_t(gt), _t(jp), "rgb")
    assert float(got["psnr"][0]) == pytest.approx(ref_psnr(gt, jp), abs=1e-10)
    assert float(got["ssim"][0]) == pytest.approx(ref_ssim(gt, jp), abs=1e-10)
    # FBCNN's colour PSNR-B: MSE over RGB, BEF of the restored image's rounded Y
    assert float(got["psnrb"][0]) == pytest.approx(ref_psnrb(gt, jp, ref_y(jp)), abs=1e-10)
    # ... which is not the BEF of the RGB channels, nor the Y-space PSNR-B
    y = metrics.compute(_t(gt), _t(jp), "y")
    assert abs(float(got["psnrb"][0]) - float(y["psnrb"][0])) > 1e-3


@pytest.mark.parametrize("space,luma", [("y-float", ref_y_float), ("y-full", ref_y_full), ("y", ref_y)])
@pytest.mark.parametrize("name", ["coffee", "chelsea", "crop100x75"])
def test_luma_spaces_against_plain(pairs, name, space, luma):
    """Each luma convention: MSE, SSIM and the BEF of the restored image, all on that luma."""
    gt, jp = pairs[name]
    got = metrics.compute(_t(gt), _t(jp), space)
    g, j = luma(gt), luma(jp)
    assert float(got["psnr"][0]) == pytest.approx(ref_psnr(g, j), abs=1e-10)
    assert float(got["ssim"][0]) == pytest.approx(ref_ssim(g, j), abs=1e-10)
    assert float(got["psnrb"][0]) == pytest.approx(ref_psnrb(g, j, j), abs=1e-10)
    assert metrics.image_metrics(gt, jp)[space] == {k: float(v[0]) for k, v in got.items()}


def test_conventions_differ_as_expected(pairs):
    """On a real JPEG: full range stretches luma by 255/219 (about -1.3 dB); unrounded Y moves PSNR a little."""
    got = metrics.image_metrics(*pairs["coffee"])
    assert set(got) == set(metrics.COLOUR_SPACES) == {"y", "y-float", "y-full", "rgb"}
    assert got["y-full"]["psnr"] - got["y"]["psnr"] == pytest.approx(-20 * np.log10(255 / 219), abs=0.1)
    assert 0 < abs(got["y-float"]["psnr"] - got["y"]["psnr"]) < 0.1
    assert got["rgb"]["psnr"] < got["y"]["psnr"]


@pytest.mark.parametrize("name", ["coffee", "camera", "chelsea", "crop100x75"])
def test_against_scikit_image(pairs, name):
    gt, jp = _y(pairs[name][0]), _y(pairs[name][1])
    got = metrics.compute(_t(gt), _t(jp), "gray")
    assert float(got["psnr"][0]) == pytest.approx(peak_signal_noise_ratio(gt, jp, data_range=255), abs=1e-10)
    mean, smap = structural_similarity(gt, jp, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255, full=True)
    # The MATLAB-style SSIM is the mean over the valid region (a 5-pixel trim of skimage's full map);
    # skimage >= 0.19 crops the same border from its mean, so both agree.
    assert float(got["ssim"][0]) == pytest.approx(float(smap[5:-5, 5:-5].mean()), abs=1e-9)
    assert float(got["ssim"][0]) == pytest.approx(float(mean), abs=1e-9)
    assert float(got["ssim"][0]) != pytest.approx(float(smap.mean()), abs=1e-6)  # the untrimmed map differs


def test_rgb_psnr_against_scikit_image(pairs):
    gt, jp = pairs["coffee"]
    got = metrics.compute(_t(gt), _t(jp), "rgb")
    assert float(got["psnr"][0]) == pytest.approx(peak_signal_noise_ratio(gt, jp, data_range=255), abs=1e-10)
    _, smap = structural_similarity(gt, jp, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=2, full=True)
    assert float(got["ssim"][0]) == pytest.approx(float(smap[5:-5, 5:-5].mean()), abs=1e-9)


def test_bef_float_normalisers_differ_from_floor_division():
    """481x321: w/8 - 1 = 59.125 (float) vs 481//8 - 1 = 59; the spec asks for the float one."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (321, 481)).astype(np.uint8)
    img[:, 7::8] = 0  # make block boundaries visible so BEF > 0
    got = float(bef(_t(img))[0])
    assert got > 0
    assert got == pytest.approx(ref_bef(img), rel=1e-12)


def test_bef_zero_without_blocking():
    flat = np.full((64, 64), 77, np.uint8)
    assert float(bef(_t(flat))[0]) == 0.0
    with pytest.raises(ValueError, match="one channel"):
        bef(torch.zeros(1, 3, 16, 16, dtype=torch.float64))


# --- Y conversion ----------------------------------------------------------------------------------------
def test_rgb_to_y_matches_formula(pairs):
    for name in ("coffee", "chelsea"):
        img = pairs[name][0]
        y = metrics.rgb_to_y(img)
        assert y.dtype == np.uint8
        assert np.array_equal(y, ref_y(img))
        # the tensor path agrees with the numpy path
        yt = metrics.rgb_to_y(_t(img))
        assert np.array_equal(yt[0, 0].numpy().astype(np.uint8), y)
        assert 16 <= y.min() and y.max() <= 235


def test_y_full_is_opencv_gray_on_every_colour():
    """All 2^24 RGB colours, numpy and tensor paths, against cv2.cvtColor(RGB2GRAY)."""
    v = np.arange(256, dtype=np.uint8)
    for r0 in range(0, 256, 64):  # a quarter of the cube at a time: 64 x 256 x 256 pixels
        r, g, b = np.meshgrid(v[r0 : r0 + 64], v, v, indexing="ij")
        rgb = np.stack([r, g, b], -1).reshape(64 * 256, 256, 3)
        want = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        got = metrics.rgb_to_y_full(rgb)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
        tens = metrics.rgb_to_y_full(_t(rgb[:4096]))[0, 0].numpy()
        assert np.array_equal(tens, want[:4096].astype(np.float64))


def test_pillow_gray_within_one_of_opencv():
    """Pillow's convert("L") rounds another fixed point: never more than 1 from y-full."""
    from PIL import Image

    img = skimage.data.coffee()
    pil = np.asarray(Image.fromarray(img).convert("L")).astype(int)
    diff = np.abs(pil - metrics.rgb_to_y_full(img).astype(int))
    assert diff.max() <= 1


def test_y_within_one_of_fbcnn_live1_gray(data_root):
    gray_dir = data_root / "live1_gray"
    pngs = sorted(gray_dir.glob("*.png"))
    assert len(pngs) == 29
    exact = total = 0
    for png in pngs:
        fbcnn = read_image(png)
        colour = read_image(data_root / "live1" / (png.stem + ".bmp"))
        ours = metrics.rgb_to_y(colour)
        assert ours.shape == fbcnn.shape, png.name
        diff = np.abs(ours.astype(int) - fbcnn.astype(int))
        assert diff.max() <= 1, png.name
        exact += int((diff == 0).sum())
        total += diff.size
    assert exact / total > 0.5  # mostly identical, off by one only on rounding edges


def test_unrounded_y_convention_matters(pairs):
    """BasicSR keeps Y unrounded (y-float); KAIR/FBCNN round it (y). The PSNR differs measurably."""
    gt, jp = pairs["coffee"]
    rounded = metrics.compute(_t(gt), _t(jp), "y")["psnr"][0]
    unrounded = metrics.compute(_t(gt), _t(jp), "y-float")["psnr"][0]
    yg = metrics.luma(_t(gt), "y-float")
    assert not torch.equal(yg, torch.round(yg))
    assert abs(float(rounded - unrounded)) > 0.005
    assert metrics.Y_CONVENTION == "bt601-studio-rounded"


# --- API ----------------------------------------------------------------------------------------------
def test_batched_equals_per_image():
    photos = [skimage.data.coffee(), skimage.data.astronaut(), skimage.data.chelsea()]
    gts = np.stack([im[:96, :136] for im in photos])  # 136: not a multiple of 8 x 16
    jps = np.stack([compress(np.ascontiguousarray(g), q).pixels for g, q in zip(gts, (10, 20, 40), strict=True)])
    for space in metrics.COLOUR_SPACES:
        batch = metrics.compute(_t(gts), _t(jps), space)
        assert all(v.shape == (3,) for v in batch.values())
        for i in range(3):
            one = metrics.compute(_t(gts[i]), _t(jps[i]), space)
            for k in ("psnr", "ssim", "psnrb"):
                assert float(batch[k][i]) == pytest.approx(float(one[k][0]), abs=1e-12), (space, k, i)


def test_identical_images():
    img = skimage.data.camera()
    got = metrics.image_metrics(img, img)
    assert set(got) == {"gray"}
    assert got["gray"]["psnr"] == float("inf")
    assert got["gray"]["ssim"] == pytest.approx(1.0, abs=1e-12)
    rgb = skimage.data.coffee()
    got = metrics.image_metrics(rgb, rgb)
    assert list(got) == list(metrics.COLOUR_SPACES) == list(metrics.spaces_of(3))
    for space in metrics.COLOUR_SPACES:
        assert got[space]["psnr"] == float("inf")
        assert got[space]["ssim"] == pytest.approx(1.0, abs=1e-12)


def test_image_metrics_matches_compute(pairs):
    gt, jp = pairs["coffee"]
    got = metrics.image_metrics(gt, jp)
    for space in metrics.COLOUR_SPACES:
        ref = metrics.compute(_t(gt), _t(jp), space)
        assert got[space] == {k: float(v[0]) for k, v in ref.items()}


def test_image_metrics_spaces_on_request(pairs):
    gt, jp = pairs["coffee"]
    every = metrics.image_metrics(gt, jp)
    assert metrics.image_metrics(gt, jp, spaces=("rgb", "y-full")) == {s: every[s] for s in ("y-full", "rgb")}
    assert metrics.image_metrics(gt, jp, spaces=("y", "gray")) == {"y": every["y"]}  # gray does not apply
    gray = pairs["camera"]
    assert set(metrics.image_metrics(*gray, spaces=("y", "gray"))) == {"gray"}
    with pytest.raises(ValueError, match="unknown metric spaces"):
        metrics.image_metrics(gt, jp, spaces=("ycbcr",))


def test_errors():
    g = _t(np.zeros((16, 16), np.uint8))
    c = _t(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.compute(g, _t(np.zeros((16, 17), np.uint8)), "gray")
    for space in metrics.COLOUR_SPACES:
        with pytest.raises(ValueError, match="RGB"):
            metrics.compute(g, g, space)
    with pytest.raises(ValueError, match="not a luma space"):
        metrics.luma(_t(np.zeros((16, 16, 3), np.uint8)), "rgb")
    with pytest.raises(ValueError, match="single-channel"):
        metrics.compute(c, c, "gray")
    with pytest.raises(ValueError, match="unknown metric space"):
        metrics.compute(c, c, "ycbcr")
    with pytest.raises(ValueError, match="11x11"):
        ssim(_t(np.zeros((10, 30), np.uint8)), _t(np.zeros((10, 30), np.uint8)))
    with pytest.raises(TypeError, match="uint8"):
        metrics.image_metrics(np.zeros((16, 16)), np.zeros((16, 16)))


@pytest.mark.parametrize("name", ["coffee", "camera", "crop100x75"])
def test_torch_engine_equals_the_numpy_engine(pairs, name):
    """The batched tensor path (what --device cuda scores with), run on the CPU in float64, gives the CPU path's
    numbers: PSNR and SSIM to 1e-9, PSNR-B to 1e-6."""
    gt, jp = pairs[name]
    g, j = _t(gt), _t(jp)
    for space in metrics.spaces_of(g.shape[1]):
        fast, batched = metrics.compute(g, j, space), metrics.compute(g, j, space, engine="torch")
        for m, tol in (("psnr", 1e-9), ("ssim", 1e-9), ("psnrb", 1e-6)):
            assert float(fast[m][0]) == pytest.approx(float(batched[m][0]), abs=tol), (space, m)
    fresh = metrics.image_metrics(gt, jp)  # the uint8 entry point builds its planes itself: the same numbers
    for space, values in fresh.items():
        for m, v in values.items():
            assert v == float(metrics.compute(g, j, space)[m][0]), (space, m)
