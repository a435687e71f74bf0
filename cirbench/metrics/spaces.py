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
image's blocking-effect factor), so nothing is computed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

__all__ = ["SPACES", "COLOUR_SPACES", "LUMA_SPACES", "Y_CONVENTION", "spaces_of", "rgb_to_y", "rgb_to_y_full",
           "luma", "to_tensor", "Pair", "pairs"]

SPACES = ("y", "y-float", "y-full", "rgb", "gray")
COLOUR_SPACES = ("y", "y-float", "y-full", "rgb")  # what a colour image is scored in; a gray one: ("gray",)
LUMA_SPACES = ("y", "y-float", "y-full")  # a gray image is its own luma: reports put "gray" beside these
Y_CONVENTION = "bt601-studio-rounded"  # recorded in results so tables say which Y they used
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_FULL_WEIGHTS = (9798, 19235, 3735)  # OpenCV's 15-bit fixed-point 0.299 / 0.587 / 0.114 (they sum to 2^15)


def rgb_to_y(rgb: np.ndarray | torch.Tensor, rounded: bool = True):
    """BT.601 luma (16..235) of RGB uint8 data; channels last for numpy, (B,3,H,W) for tensors.

    ``rounded=True`` is KAIR's ``rgb2ycbcr(only_y=True)`` on uint8 input (round half to even,
    as ``numpy.round``).
    """
    if isinstance(rgb, torch.Tensor):
        # (R w0 + G w1 + B w2) / 255 + 16, accumulated in place: bit for bit the value of
        # ``(rgb * w).sum(1) / 255 + 16`` at a quarter of the time (no 3-channel temporaries).
        rgb = rgb.to(torch.float64)
        w0, w1, w2 = _Y_WEIGHTS
        y = rgb[:, 0:1] * w0
        y += rgb[:, 1:2] * w1
        y += rgb[:, 2:3] * w2
        y /= 255.0
        y += 16.0
        return y.round_() if rounded else y
    y = np.dot(rgb.astype(np.float64), np.array(_Y_WEIGHTS)) / 255.0 + 16.0
    return np.round(y).astype(np.uint8) if rounded else y


def rgb_to_y_full(rgb: np.ndarray | torch.Tensor):
    """Full-range BT.601 luma of RGB uint8 data, rounded as OpenCV's 8-bit ``cvtColor(RGB2GRAY)``;
    channels last for numpy (uint8 out), (B,3,H,W) for tensors (float64 integers out)."""
    w0, w1, w2 = _FULL_WEIGHTS
    if isinstance(rgb, torch.Tensor):
        # Integers below 2^23 throughout: float64 holds them exactly, and /2^15 then floor is the shift.
        rgb = rgb.to(torch.float64)
        y = rgb[:, 0:1] * w0
        y += rgb[:, 1:2] * w1
        y += rgb[:, 2:3] * w2
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
    rounded ``y`` for ``rgb``, as FBCNN's colour script). ``shared`` is one cache for all spaces of an image."""

    def __init__(self, space: str, gt: torch.Tensor, out: torch.Tensor, shared: dict,
                 bef_source: torch.Tensor | None = None, bef_space: str | None = None):
        self.space, self.gt, self.out, self._shared = space, gt, out, shared
        self.bef_source = out if bef_source is None else bef_source
        self.bef_space = bef_space or space

    def shared(self, key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` once per image set and key (e.g. ``("bef", "y")``, which ``y`` and ``rgb`` share)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def mse(self) -> torch.Tensor:
        return self.shared(("mse", self.space), lambda: ((self.gt - self.out) ** 2).flatten(1).mean(1))

    def arrays(self, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(restored, target) of image ``i`` as a plug-in metric gets them: uint8 HxW (``y``, ``y-full``,
        ``gray``) or HxWx3 (``rgb``); float64 HxW for ``y-float``, which is not an integer image."""
        def one(t: torch.Tensor) -> np.ndarray:
            a = t[i].permute(1, 2, 0).numpy() if t.shape[1] == 3 else t[i, 0].numpy()
            return a if self.space == "y-float" else a.astype(np.uint8)

        return one(self.out), one(self.gt)


def pairs(gt: torch.Tensor, restored: torch.Tensor, spaces: Iterable[str]) -> dict[str, Pair]:
    """The :class:`Pair` of each wanted space that applies to the images (gray data: ``gray`` only), sharing
    one cache: the restored image's rounded Y is made once for ``y`` and ``rgb``."""
    if gt.shape != restored.shape:
        raise ValueError(f"shape mismatch: ground truth {tuple(gt.shape)} vs restored {tuple(restored.shape)}")
    wanted = [s for s in spaces_of(gt.shape[1]) if s in set(spaces)]
    shared: dict = {}
    if gt.shape[1] == 1:
        return {"gray": Pair("gray", gt, restored, shared)} if wanted else {}
    ry = rgb_to_y(restored) if {"y", "rgb"} & set(wanted) else None
    out = {}
    for space in wanted:
        if space == "rgb":
            out[space] = Pair(space, gt, restored, shared, bef_source=ry, bef_space="y")
        elif space == "y":
            out[space] = Pair(space, rgb_to_y(gt), ry, shared)
        else:
            out[space] = Pair(space, luma(gt, space), luma(restored, space), shared)
    return out
