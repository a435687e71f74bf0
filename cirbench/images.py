"""Reading images for evaluation and training, with one clear policy for awkward files.

Every evaluation image becomes uint8: HxW for grayscale, HxWx3 RGB for colour. Policy:

* 8-bit gray (L) and RGB are read as stored. Palette images are expanded to RGB (or L when the
  palette is gray). RGBA / LA lose their alpha channel with a warning (JPEG has no alpha).
* EXIF orientation is ignored: pixels are used in stored order, as OpenCV's ``IMREAD_UNCHANGED``
  (KAIR's reader) does, so numbers match the literature; a warning says so.
* Refused, with a message naming the file: 16-bit (gray or colour: Pillow would keep only the high
  byte of a 48-bit RGB PNG) or float images, CMYK, files of several frames (APNG, multi-page TIFF,
  animated WebP: which frame is meant?), GIF, files that are not images or are truncated, unreadable
  files ("permission denied"), links to missing files, images smaller than ``MIN_SIDE`` (the SSIM
  window), and images over ``MAX_PIXELS`` (Pillow's decompression-bomb guard).

A folder dataset lists its images by suffix (:data:`IMAGE_SUFFIXES`); files with a suffix of a format
cirbench refuses (:data:`REFUSED_SUFFIXES`, e.g. ``.gif``) and dangling links are listed too, so the
preflight names them instead of leaving them out unsaid.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

__all__ = ["ImageError", "read_image", "list_images", "to_uint8", "IMAGE_SUFFIXES", "REFUSED_SUFFIXES",
           "MIN_SIDE", "MAX_PIXELS"]

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
# Image formats a folder may hold that are never evaluated: listed so that they are named, not skipped unsaid.
REFUSED_SUFFIXES = (".gif", ".apng", ".avif", ".heic", ".heif", ".jp2", ".j2k", ".jxl")
MIN_SIDE = 11  # SSIM's 11x11 window needs at least this much
MAX_PIXELS = 16384 * 16384  # 268 MP; above this Pillow's bomb guard refuses the file
_EXIF_ORIENTATION = 0x0112


# Pillow's own guard is a process-wide limit plus a warning; preflight reads files from several threads, and
# warning filters are not thread-safe, so the guard is ours: Pillow's is lifted only while a header is parsed
# (under a lock) and the size is checked before any pixel is decoded.
_GUARD_LOCK = threading.Lock()


def _open_unguarded(path: Path) -> Image.Image:
    with _GUARD_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def read_image(path: str | Path, *, min_side: int = MIN_SIDE, notes: list[str] | None = None) -> np.ndarray:
    """Read an image as uint8 gray (HxW) or RGB (HxWx3) following the module's policy. The policy's warnings
    are appended to ``notes`` when given (thread-safe, unlike the warnings module), else warned."""
    path = Path(path)
    try:
        with _open_unguarded(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: larger than {MAX_PIXELS} pixels (decompression-bomb guard); split or downscale it"
                )
            _refuse_layout(im, path)
            im.load()
            arr = _to_array(im, path, notes)
    except ImageError:
        raise
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError(f"{path}: a link to a missing file ({os.readlink(path)}); fix or remove the link"
                             ) from None
        raise ImageError(f"{path}: file not found") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; make the file readable (chmod a+r) or remove it") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read; remove it from the dataset folder") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc}); replace the file") from None
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(
            f"{path}: {w}x{h} is smaller than {min_side}x{min_side}, the SSIM window; use larger images"
        )
    return arr


def list_images(folder: str | Path, *, recursive: bool = False, refused: bool = False) -> list[Path]:
    """The image files of a folder (by suffix, :data:`IMAGE_SUFFIXES`), sorted by path. With ``refused``, also
    the files :func:`read_image` will refuse by name alone (:data:`REFUSED_SUFFIXES`, dangling links), so an
    evaluation names them."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    suffixes = IMAGE_SUFFIXES + (REFUSED_SUFFIXES if refused else ())
    return sorted(p for p in found if p.suffix.lower() in suffixes
                  and (p.is_file() or (refused and p.is_symlink() and not p.exists())))


def _refuse_layout(im: Image.Image, path: Path) -> None:
    """Refuse what would be scored as something else: several frames, a GIF, 16 bits per colour channel
    (Pillow opens a 48-bit PNG as 8-bit RGB, keeping the high byte)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise ImageError(f"{path}: {frames} frames (an animation or a multi-page file); only single images are "
                         "evaluated: save the frame you mean as PNG")
    if im.format == "GIF" or path.suffix.lower() in REFUSED_SUFFIXES:
        raise ImageError(f"{path}: {im.format or path.suffix} is not an evaluation format (GIF holds 256 colours "
                         "at most); convert the image to PNG or remove it")
    for tile in im.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args if isinstance(args, str) else next((a for a in args or () if isinstance(a, str)), "")
        if ";16" in rawmode and im.mode in ("RGB", "RGBA"):
            raise ImageError(f"{path}: 16-bit colour ({rawmode}) images are not supported; convert to 8-bit first")


def _to_array(im: Image.Image, path: Path, notes: list[str] | None) -> np.ndarray:
    def warn(text: str) -> None:
        if notes is not None:
            notes.append(text)
        else:
            warnings.warn(text, stacklevel=4)

    if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        warn(f"{path}: EXIF orientation ignored; pixels used in stored order")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;"):
        raise ImageError(f"{path}: {mode} ({'16-bit' if '16' in mode else '32-bit'}) images are not "
                         "supported; convert to 8-bit first")
    if mode == "CMYK":
        raise ImageError(f"{path}: CMYK images are not supported; convert to RGB first")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            rgb = np.asarray(im)
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                return rgb[..., 0].copy()
            return rgb.copy()
    if mode in ("RGBA", "LA", "PA"):
        warn(f"{path}: alpha channel dropped")
        im = im.convert("RGB" if mode != "LA" else "L")
        mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode not in ("L", "RGB"):
        try:
            im = im.convert("RGB")
        except (ValueError, OSError):
            raise ImageError(f"{path}: unsupported image mode {mode}; convert to 8-bit RGB or gray") from None
    return np.asarray(im).copy()


def to_uint8(t):
    """A float tensor in [0, 1] (any shape) as the benchmark rounds a model's output: NaN -> 0, +inf -> 1,
    -inf -> 0, clamp, x255, round half to even, uint8. Returns ``(uint8 tensor, whether any value was not
    finite)``."""
    import torch

    nonfinite = not bool(torch.isfinite(t).all())
    if nonfinite:
        t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0)
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8), nonfinite
