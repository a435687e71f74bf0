"""JPEG degradation: single and double compression, bit-identical to OpenCV's ``cv2.imencode``.

Pillow and OpenCV both drive libjpeg(-turbo) with its defaults (IJG tables scaled by the quality
factor, 4:2:0 chroma subsampling for colour, the integer "islow" DCT, fancy upsampling on decode),
so the decoded pixels match OpenCV's pipeline exactly; ``tests/test_jpeg.py`` checks it pixel for
pixel. Pillow is used because it is a core dependency and OpenCV is not.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

__all__ = ["Compressed", "encode", "decode", "compress", "double_compress", "encoder_info"]


@dataclass(frozen=True)
class Compressed:
    """A compressed image: the decoded pixels and the sha256 of the JPEG bytes that made them."""

    pixels: np.ndarray  # uint8, HxW (gray) or HxWx3 (RGB)
    sha256: str
    nbytes: int


def _check_qf(qf: int) -> int:
    if isinstance(qf, bool) or not isinstance(qf, (int, np.integer)) or not 1 <= int(qf) <= 100:
        raise ValueError(f"JPEG quality factor must be an integer in 1..100, got {qf!r}")
    return int(qf)


def encode(img: np.ndarray, qf: int) -> bytes:
    """Encode a uint8 HxW or HxWx3 (RGB) array as baseline JPEG at quality ``qf``."""
    qf = _check_qf(qf)
    if img.dtype != np.uint8:
        raise TypeError(f"JPEG input must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"JPEG input must be HxW or HxWx3, got shape {img.shape}")
    buf = io.BytesIO()
    # subsampling=2 is 4:2:0, libjpeg's default and OpenCV's; no optimize/progressive, as OpenCV.
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=qf, subsampling=2)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to uint8 (HxW for gray, HxWx3 RGB for colour)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        return np.asarray(im).copy()


def compress(img: np.ndarray, qf: int) -> Compressed:
    """One JPEG round trip at quality ``qf``."""
    data = encode(img, qf)
    return Compressed(decode(data), hashlib.sha256(data).hexdigest(), len(data))


def double_compress(
    img: np.ndarray, qf1: int, qf2: int, shift: tuple[int, int] = (0, 0)
) -> tuple[Compressed, np.ndarray]:
    """Double JPEG: QF1, optional crop of ``shift`` = (dy, dx) pixels from top/left, then QF2.

    Returns the compressed image and the ground truth cropped the same way (FBCNN's
    non-aligned protocol uses shift (4, 4)). The recorded sha256 is of the second JPEG.
    """
    dy, dx = shift
    if dy < 0 or dx < 0:
        raise ValueError(f"double-JPEG shift must be non-negative, got {shift}")
    first = compress(img, qf1).pixels[dy:, dx:]
    return compress(np.ascontiguousarray(first), qf2), img[dy:, dx:]


def encoder_info() -> dict[str, str]:
    """The encoder and its library versions, recorded in every run."""
    import PIL

    turbo = features.check_feature("libjpeg_turbo")
    return {
        "encoder": "pillow",
        "pillow": PIL.__version__,
        "libjpeg": ("libjpeg-turbo " if turbo else "libjpeg ")
        + str(features.version("libjpeg_turbo") if turbo else features.version_codec("jpg")),
        "chroma_subsampling": "4:2:0",
        "dct": "islow",
    }
