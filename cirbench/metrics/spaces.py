"""Metric spaces: the image a metric sees, in every convention the JPEG-restoration literature uses.

* ``y``       — BT.601 studio-range luma, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded
  half to even, as KAIR/FBCNN/SwinIR's ``rgb2ycbcr(only_y=True)`` on uint8 input. The default.
* ``y-float`` — the same luma kept in float64, as BasicSR's ``test_y_channel`` (HAT, GRL, ...).
* ``y-full``  — full-range BT.601 luma 0.299 R + 0.587 G + 0.114 B, rounded as OpenCV's 8-bit
  ``cvtColor(RGB2GRAY)``: (9798 R + 19235 G + 3735 B + 2^14) >> 15. Pillow's ``convert("L")``
  rounds (19595 R + 38470 G + 7471 B + 2^15) >> 16 and differs by 1 on 21745 of the 2^24 colours.
* ``rgb``     — the three RGB channels.
* ``gray``    — single-channel data.

A :class:`Pair` is one space's view of a ground truth and a restored image (a batch of them): float64 planes
(B, C, H, W) on 0..255, plus a cache the metrics of one image share across spaces (the MSE, the restored
image's blocking-effect factor), so nothing is computed twice. Its ``engine`` says how the metrics compute:
``numpy`` (NumPy and OpenCV on the CPU, the default there) or ``torch`` (batched tensor ops on any device; on
the CPU in float64 it gives the same numbers, which the tests check).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np
import torch

__all__ = ["SPACES", "COLOUR_SPACES", "LUMA_SPACES", "Y_CONVENTION", "spaces_of", "rgb_to_y", "rgb_to_y_full",
           "luma", "to_tensor", "Pair", "pairs", "workspace"]

SPACES = ("y", "y-float", "y-full", "rgb", "gray")
COLOUR_SPACES = ("y", "y-float", "y-full", "rgb")  # what a colour image is scored in; a gray one: ("gray",)
LUMA_SPACES = ("y", "y-float", "y-full")  # a gray image is its own luma: reports put "gray" beside these
Y_CONVENTION = "bt601-studio-rounded"  # recorded in results so tables say which Y they used
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_FULL_WEIGHTS = (9798, 19235, 3735)  # OpenCV's 15-bit fixed-point 0.299 / 0.587 / 0.114 (they sum to 2^15)


class _Workspace(threading.local):
    """Float64 scratch arrays of this thread, kept between images: a fresh multi-megabyte array costs page
    faults and zeroing on every touch (half the time of a NumPy SSIM, measured), a reused one nothing. Each name
    is one buffer, grown to the largest image seen, so two names never alias."""

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        buf = self.buffers.get(name)
        if buf is None or buf.size < n:
            buf = self.buffers[name] = np.empty(n)
        return buf[:n].reshape(shape)


workspace = _Workspace()


def _weighted(rgb: torch.Tensor, w: tuple) -> torch.Tensor:
    """R w0 + G w1 + B w2 of a (B,3,H,W) batch in float64, accumulated in place (B,1,H,W)."""
    rgb = rgb.to(torch.float64)
    y = rgb[:, 0:1] * w[0]
    y += rgb[:, 1:2] * w[1]
    y += rgb[:, 2:3] * w[2]
    return y


def rgb_to_y(rgb: np.ndarray | torch.Tensor, rounded: bool = True, out: np.ndarray | None = None):
    """BT.601 luma (16..235) of RGB uint8 data; channels last for numpy, (B,3,H,W) for tensors.

    ``rounded=True`` is KAIR's ``rgb2ycbcr(only_y=True)`` on uint8 input (round half to even,
    as ``numpy.round``).
    """
    w0, w1, w2 = _Y_WEIGHTS
    if isinstance(rgb, torch.Tensor):
        # (R w0 + G w1 + B w2) / 255 + 16, accumulated in place: bit for bit the value of
        # ``(rgb * w).sum(1) / 255 + 16`` at a quarter of the time (no 3-channel temporaries).
        y = _weighted(rgb, _Y_WEIGHTS)
        y /= 255.0
        y += 16.0
        return y.round_() if rounded else y
    # The same operations in the same order as the tensor branch: equal to it, and rounded equal to KAIR's
    # ``np.dot(rgb, w) / 255 + 16``, on every one of the 2^24 colours (checked), at a fifth of np.dot's time.
    # ``out`` (float64, HxW) receives the unrounded luma without a new array.
    y = np.multiply(rgb[..., 0], w0, out=out)
    y += rgb[..., 1] * w1
    y += rgb[..., 2] * w2
    y /= 255.0
    y += 16.0
    return np.round(y).astype(np.uint8) if rounded else y


def rgb_to_y_full(rgb: np.ndarray | torch.Tensor):
    """Full-range BT.601 luma of RGB uint8 data, rounded as OpenCV's 8-bit ``cvtColor(RGB2GRAY)``;
    channels last for numpy (uint8 out), (B,3,H,W) for tensors (float64 integers out)."""
    w0, w1, w2 = _FULL_WEIGHTS
    if isinstance(rgb, torch.Tensor):
        # Integers below 2^23 throughout: float64 holds them exactly, and /2^15 then floor is the shift.
        y = _weighted(rgb, _FULL_WEIGHTS)
        y += 1 << 14
        return y.div_(1 << 15).floor_()
    x = rgb.astype(np.int32)
    return ((x[..., 0] * w0 + x[..., 1] * w1 + x[..., 2] * w2 + (1 << 14)) >> 15).astype(np.uint8)


def luma(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """The one-channel image of (B,3,H,W) RGB data in a luma space: ``y``, ``y-float`` or ``y-full``."""
    if space == "y":
        return rgb_to_y(rgb)
    if space == "y-float":
        return rgb_to_y(rgb, rounded=False)
    if space == "y-full":
        return rgb_to_y_full(rgb)
    raise ValueError(f"{space!r} is not a luma space; expected y, y-float or y-full")


def spaces_of(channels: int) -> tuple[str, ...]:
    """The spaces an image of this many channels is scored in."""
    return ("gray",) if channels == 1 else COLOUR_SPACES


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC (or a stack BxHxWxC) to a contiguous float64 (B,C,H,W) copy.

    Contiguous planes: the metrics then never copy a channel-interleaved layout again (issue 7)."""
    if img.ndim == 2:
        img = img[None, None]
    elif img.ndim == 3:
        img = img.transpose(2, 0, 1)[None]
    else:
        img = img.transpose(0, 3, 1, 2)
    return torch.tensor(np.ascontiguousarray(img), dtype=torch.float64)  # a copy: inputs may be read-only


class Pair:
    """One space's ground truth and restored planes (B, C, H, W), float64 on 0..255.

    ``bef_space`` names the one-channel image whose blocking-effect factor PSNR-B uses (the restored image's
    rounded ``y`` for ``rgb``, as FBCNN's colour script). ``shared`` is one cache for all spaces of an image.
    ``engine``: "numpy" (CPU tensors, read through zero-copy NumPy views) or "torch"."""

    def __init__(self, space: str, gt: torch.Tensor, out: torch.Tensor, shared: dict,
                 bef_source: torch.Tensor | None = None, bef_space: str | None = None, engine: str = "torch"):
        self.space, self.gt, self.out, self._shared, self.engine = space, gt, out, shared, engine
        self.bef_source = out if bef_source is None else bef_source
        self.bef_space = bef_space or space

    def shared(self, key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` once per image set and key (e.g. ``("bef", "y")``, which ``y`` and ``rgb`` share)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def mse(self) -> torch.Tensor:
        return self.shared(("mse", self.space), self._mse)

    def _mse(self) -> torch.Tensor:
        if self.engine == "numpy":  # integer planes: the sum of squares is exact, as FBCNN's np.mean
            g = self.gt.numpy()
            d = np.subtract(g, self.out.numpy(), out=workspace("mse", g.shape))
            d *= d
            return torch.from_numpy(d.reshape(d.shape[0], -1).mean(1))
        return ((self.gt - self.out) ** 2).flatten(1).mean(1)

    def arrays(self, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(restored, target) of image ``i`` as a plug-in metric gets them: uint8 HxW (``y``, ``y-full``,
        ``gray``) or HxWx3 (``rgb``); float64 HxW for ``y-float``, which is not an integer image."""
        def one(t: torch.Tensor) -> np.ndarray:
            t = t.cpu()
            a = t[i].permute(1, 2, 0).numpy() if t.shape[1] == 3 else t[i, 0].numpy()
            return a.copy() if self.space == "y-float" else a.astype(np.uint8)  # a copy: planes may be reused

        return one(self.out), one(self.gt)


def _wanted(channels: int, spaces: Iterable[str]) -> list[str]:
    return [s for s in spaces_of(channels) if s in set(spaces)]


def pairs(gt: torch.Tensor | np.ndarray, restored: torch.Tensor | np.ndarray, spaces: Iterable[str],
          engine: str | None = None, scratch: bool = False) -> dict[str, Pair]:
    """The :class:`Pair` of each wanted space that applies to the images (gray data: ``gray`` only), sharing
    one cache. ``gt`` and ``restored`` are one image's uint8 arrays (HxW or HxWx3: the planes are made with
    NumPy, each luma once) or float64 batches (B, C, H, W) on any device. ``engine``: "numpy" or "torch";
    default numpy for CPU data, torch elsewhere. ``scratch``: the planes live in this thread's
    :data:`workspace`, valid until its next use (for a caller that scores them at once)."""
    if gt.shape != restored.shape:
        raise ValueError(f"shape mismatch: ground truth {tuple(gt.shape)} vs restored {tuple(restored.shape)}")
    if isinstance(gt, np.ndarray):
        return _pairs_of_arrays(gt, restored, spaces, engine or "numpy", scratch)
    engine = engine or ("numpy" if gt.device.type == "cpu" else "torch")
    wanted = _wanted(gt.shape[1], spaces)
    shared: dict = {}
    if gt.shape[1] == 1:
        return {"gray": Pair("gray", gt, restored, shared, engine=engine)} if wanted else {}
    ry = rgb_to_y(restored) if {"y", "rgb"} & set(wanted) else None
    out = {}
    for space in wanted:
        if space == "rgb":
            out[space] = Pair(space, gt, restored, shared, bef_source=ry, bef_space="y", engine=engine)
        elif space == "y":
            out[space] = Pair(space, rgb_to_y(gt), ry, shared, engine=engine)
        else:
            out[space] = Pair(space, luma(gt, space), luma(restored, space), shared, engine=engine)
    return out


def round_y(y_float: np.ndarray, out: np.ndarray) -> np.ndarray:
    """KAIR's rounding of the studio-range luma (``y`` from ``y-float``): half to even, as ``numpy.round``."""
    return np.round(y_float, out=out)


def _plane(a: np.ndarray) -> torch.Tensor:
    """A float64 HxW or CxHxW NumPy array as a (1, C, H, W) tensor sharing its memory."""
    return torch.from_numpy(a.reshape(1, -1, *a.shape[-2:]))


def _pairs_of_arrays(gt: np.ndarray, restored: np.ndarray, spaces, engine: str, scratch: bool) -> dict[str, Pair]:
    """:func:`pairs` of one uint8 image pair: only the planes the spaces need, the float Y once for y-float
    and y (rounding it gives y), with no float64 copy of the colour image unless ``rgb`` is wanted."""
    channels = 1 if gt.ndim == 2 else gt.shape[2]
    wanted = _wanted(channels, spaces)
    images = {"gt": gt, "out": restored}

    def buffer(name: str, shape) -> np.ndarray:
        return workspace(name, shape) if scratch else np.empty(shape)

    def made(name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        if name not in planes:
            planes[name] = make()
        return planes[name]

    def y_float(k: str) -> np.ndarray:
        return made(f"{k}-yf", lambda: rgb_to_y(images[k], rounded=False, out=buffer(f"{k}-yf", gt.shape[:2])))

    def y(k: str) -> np.ndarray:
        return made(f"{k}-y", lambda: round_y(y_float(k), out=buffer(f"{k}-y", gt.shape[:2])))

    def as_float(k: str, a: np.ndarray, name: str) -> np.ndarray:
        out = buffer(f"{k}-{name}", a.shape)
        out[...] = a
        return out

    planes: dict[str, np.ndarray] = {}
    shared: dict = {}
    out = {}
    if channels == 1:
        if wanted:
            out["gray"] = Pair("gray", _plane(as_float("gt", gt, "gray")), _plane(as_float("out", restored, "gray")),
                               shared, engine=engine)
        return out
    for space in wanted:
        if space == "y":
            out[space] = Pair(space, _plane(y("gt")), _plane(y("out")), shared, engine=engine)
        elif space == "y-float":
            out[space] = Pair(space, _plane(y_float("gt")), _plane(y_float("out")), shared, engine=engine)
        elif space == "y-full":
            out[space] = Pair(space, _plane(as_float("gt", rgb_to_y_full(gt), "yfull")),
                              _plane(as_float("out", rgb_to_y_full(restored), "yfull")), shared, engine=engine)
        else:  # channel planes, each contiguous (the image is channel-interleaved)
            out[space] = Pair(space, _plane(as_float("gt", gt.transpose(2, 0, 1), "rgb")),
                              _plane(as_float("out", restored.transpose(2, 0, 1), "rgb")), shared,
                              bef_source=_plane(y("out")), bef_space="y", engine=engine)
    return out
