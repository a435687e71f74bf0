"""JPEG degradation: single and double compression, bit-identical to OpenCV's ``cv2.imencode``.

Pillow and OpenCV both drive libjpeg(-turbo) with its defaults (IJG tables scaled by the quality
factor, 4:2:0 chroma subsampling for colour, the integer "islow" DCT, fancy upsampling on decode),
so the decoded pixels match OpenCV's pipeline exactly; ``tests/test_jpeg.py`` checks it pixel for
pixel. Pillow is used because it is a core dependency and OpenCV is not.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

__all__ = ["Compressed", "Degradation", "encode", "decode", "compress", "double_compress", "encoder_info"]


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


@dataclass(frozen=True)
class Degradation:
    """One degradation: single JPEG at ``qf``, or double JPEG ``qf1`` -> crop ``shift`` -> ``qf``.

    The one owner of its three spellings: records' ``name`` (``"jpeg"``, ``"double-q10-s4x4"``, with the
    last QF in its own field), table ``label`` (``"QF 10"``, ``"QF 10→30 s4,4"``) and the literature CSV's
    ``published`` text (``"jpeg:10"``, ``"double:10,30,shift4"``).
    """

    qf: int
    qf1: int | None = None
    shift: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        if self.qf1 is None:
            return "jpeg"
        return f"double-q{self.qf1}-s{self.shift[0]}x{self.shift[1]}"

    @classmethod
    def from_name(cls, name: str, qf: int) -> Degradation:
        """Inverse of :attr:`name`: ("double-q10-s4x4", 30) -> Degradation(30, 10, (4, 4))."""
        if name == "jpeg":
            return cls(int(qf))
        m = re.fullmatch(r"double-q(\d+)-s(\d+)x(\d+)", name)
        if not m:
            raise ValueError(f"unknown degradation {name!r}; expected 'jpeg' or 'double-q<QF1>-s<dy>x<dx>'")
        return cls(int(qf), int(m[1]), (int(m[2]), int(m[3])))

    @classmethod
    def from_published(cls, text: str) -> Degradation:
        """The literature CSV's spelling: ``jpeg:10``, or ``double:30,10,shift4`` (QF 30, then QF 10 on a
        grid shifted by 4, 4 pixels)."""
        text = text.strip()
        m = re.fullmatch(r"jpeg:(\d+)", text)
        if m:
            return cls(int(m[1]))
        m = re.fullmatch(r"double:(\d+),(\d+)(?:,shift(\d+))?", text)
        if m:
            shift = int(m[3] or 0)
            return cls(int(m[2]), int(m[1]), (shift, shift))
        raise ValueError(f"unknown published degradation {text!r}; expected 'jpeg:QF' or 'double:QF1,QF2[,shiftN]'")

    @property
    def label(self) -> str:
        """A table column's label: ``QF 10``, or ``QF 10→30`` (plus `` s4,4`` when shifted)."""
        if self.qf1 is None:
            return f"QF {self.qf}"
        shift = "" if self.shift == (0, 0) else f" s{self.shift[0]},{self.shift[1]}"
        return f"QF {self.qf1}→{self.qf}{shift}"

    def apply(self, img: np.ndarray) -> tuple[Compressed, np.ndarray]:
        """The compressed image and the ground truth it is scored against (cropped when shifted)."""
        if self.qf1 is None:
            return compress(img, self.qf), img
        return double_compress(img, self.qf1, self.qf, self.shift)
