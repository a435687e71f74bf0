"""JPEG degradation: Pillow's path must be pixel-identical to OpenCV's imencode/imdecode (FBCNN's)."""

import hashlib

import cv2
import numpy as np
import pytest
import skimage.data

from cirbench import jpeg

QFS = (1, 5, 10, 37, 90, 100)


def cv2_jpeg(img: np.ndarray, qf: int) -> np.ndarray:
    """FBCNN's degradation: colour RGB -> BGR -> imencode -> imdecode -> RGB; gray as is."""
    if img.ndim == 3:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, qf])
        assert ok
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, qf])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _images() -> dict[str, np.ndarray]:
    # scikit-image's bundled photographs (CC0 / no known copyright), read from the installed package.
    astronaut, chelsea = skimage.data.astronaut(), skimage.data.chelsea()
    return {
        "astronaut-rgb": astronaut,
        "camera-gray": skimage.data.camera(),
        "chelsea-rgb": chelsea,  # 451x300: not a multiple of 8 or 16
        "chelsea-gray": cv2.cvtColor(chelsea, cv2.COLOR_RGB2GRAY),
        "astronaut-crop-37x29-rgb": np.ascontiguousarray(astronaut[101:130, 203:240]),
        "camera-crop-37x29-gray": np.ascontiguousarray(skimage.data.camera()[207:236, 203:240]),
    }


@pytest.fixture(scope="module")
def images():
    return _images()


def test_test_images_have_awkward_sizes(images):
    assert images["astronaut-crop-37x29-rgb"].shape == (29, 37, 3)
    assert images["camera-crop-37x29-gray"].shape == (29, 37)
    assert images["chelsea-rgb"].shape[:2] == (300, 451)


@pytest.mark.parametrize("qf", QFS)
def test_pillow_matches_opencv_pixel_for_pixel(images, qf):
    for name, img in images.items():
        ours = jpeg.compress(img, qf)
        ref = cv2_jpeg(img, qf)
        assert ours.pixels.dtype == np.uint8
        assert ours.pixels.shape == img.shape, name
        assert np.array_equal(ours.pixels, ref), f"{name} QF{qf}: {int((ours.pixels != ref).sum())} pixels differ"


def test_compressed_records_sha256_and_size(images):
    img = images["camera-gray"]
    data = jpeg.encode(img, 10)
    c = jpeg.compress(img, 10)
    assert c.sha256 == hashlib.sha256(data).hexdigest()
    assert c.nbytes == len(data)
    assert np.array_equal(jpeg.decode(data), c.pixels)
    assert data[:2] == b"\xff\xd8"  # a baseline JPEG stream
    # 4:2:0 chroma for colour: the SOF0 luma component has sampling factors 2x2 (0x22).
    rgb = jpeg.encode(images["astronaut-rgb"], 50)
    sof = rgb.index(b"\xff\xc0")
    assert rgb[sof + 9 + 2] == 0x22  # component 1 (Y): id, sampling, table


def test_hxwx1_input_is_gray(images):
    img = images["camera-crop-37x29-gray"]
    assert np.array_equal(jpeg.compress(img[:, :, None], 30).pixels, jpeg.compress(img, 30).pixels)


def _double_by_hand(img, qf1, qf2, dy, dx):
    first = cv2_jpeg(img, qf1)[dy:, dx:]
    return cv2_jpeg(np.ascontiguousarray(first), qf2), img[dy:, dx:]


@pytest.mark.parametrize("shift", [(0, 0), (4, 4), (3, 1)])
@pytest.mark.parametrize("key", ["camera-gray", "astronaut-rgb"])
def test_double_jpeg_matches_opencv_by_hand(images, key, shift):
    img = images[key]
    comp, gt = jpeg.double_compress(img, 10, 30, shift)
    ref, ref_gt = _double_by_hand(img, 10, 30, *shift)
    assert np.array_equal(gt, ref_gt)
    assert gt.shape[:2] == (img.shape[0] - shift[0], img.shape[1] - shift[1])
    assert comp.pixels.shape == gt.shape
    assert np.array_equal(comp.pixels, ref)
    # the recorded hash is of the second JPEG
    first = jpeg.compress(img, 10).pixels[shift[0]:, shift[1]:]
    assert comp.sha256 == hashlib.sha256(jpeg.encode(np.ascontiguousarray(first), 30)).hexdigest()


def test_double_jpeg_shift_changes_result(images):
    img = images["camera-gray"]
    aligned, _ = jpeg.double_compress(img, 30, 10)
    shifted, gt = jpeg.double_compress(img, 30, 10, (4, 4))
    assert not np.array_equal(aligned.pixels[4:, 4:], shifted.pixels)
    assert np.array_equal(gt, img[4:, 4:])
    with pytest.raises(ValueError, match="shift"):
        jpeg.double_compress(img, 30, 10, (-1, 0))


@pytest.mark.parametrize("qf", [0, 101, -5, 1.5, 10.0, True, False, "10", None])
def test_bad_qf_raises(qf):
    img = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="quality factor"):
        jpeg.encode(img, qf)
    with pytest.raises(ValueError, match="quality factor"):
        jpeg.compress(img, qf)


def test_numpy_integer_qf_ok():
    img = np.full((16, 16), 128, np.uint8)
    assert np.array_equal(jpeg.compress(img, np.int64(37)).pixels, cv2_jpeg(img, 37))


def test_bad_input_raises():
    with pytest.raises(TypeError, match="uint8"):
        jpeg.encode(np.zeros((16, 16), np.float32), 10)
    with pytest.raises(ValueError, match="shape"):
        jpeg.encode(np.zeros((16, 16, 4), np.uint8), 10)


def test_encoder_info_names_pillow_and_libjpeg():
    import PIL

    info = jpeg.encoder_info()
    assert info["encoder"] == "pillow"
    assert info["pillow"] == PIL.__version__
    assert info["libjpeg"].startswith("libjpeg")
    version = info["libjpeg"].split()[-1]
    assert version and version != "None" and any(ch.isdigit() for ch in version)
    assert info["chroma_subsampling"] == "4:2:0"
