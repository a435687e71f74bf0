"""Running a network on an image: colour handling, padding, tiling, self-ensemble, rounding.

The steps, in order, for one image:

1. uint8 -> float [0, 1] NCHW. Gray data through an RGB model is replicated to three channels and
   the output's channel mean is taken (documented in the README).
2. Pad to the model's multiple (mode from its card; ``official32`` is PromptCIR's NTIRE rule:
   ``(n // 32 + 1) * 32 - n`` of symmetric padding, so a multiple of 32 still gets 32 more).
3. Optionally split into tiles whose origins are multiples of lcm(8, multiple), so every tile
   sees the JPEG 8x8 grid where the whole image does; overlaps are averaged uniformly. On an
   out-of-memory error the tile is halved and the image retried.
4. Optional transpose self-ensemble and averaging over several checkpoints (clamped each).
5. Clamp to [0, 1], x255, round, uint8 — metrics only ever see this.

Named settings: ``single`` (whole image, one checkpoint, no ensemble) and ``ntire24`` (the exact
PromptCIR NTIRE 2024 test script: 384/96 tiles, two checkpoints x transpose). A result is
recorded with its setting and settings are never mixed in one mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..images import to_uint8
from .restorer import ModelInfo, Restored

__all__ = ["InferenceSettings", "TorchRestorer", "pad_image", "tile_origins", "cpu_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX). Without it bf16 matmuls and convolutions
    fall back to scalar code: 0.3 GFLOP/s against 70 in fp32, measured on an AVX2-only EPYC."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass(frozen=True)
class InferenceSettings:
    name: str = "single"
    tile: int | None = None  # tile side in pixels; None = whole image
    overlap: int = 32
    ensemble: str = "none"  # "none" or "transpose"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    channels_last: bool = False
    auto_tile_pixels: int = 4096 * 4096  # larger images are tiled automatically (bounded memory)...
    auto_tile: int = 1024  # ...in tiles of this side
    min_tile: int = 64
    # The official NTIRE script's rule: tiles are min(tile, H, W) squares even when the whole image
    # fits in one tile (so a non-square image smaller than the tile is still tiled).
    square_tiles: bool = False

    @classmethod
    def named(cls, name: str, **overrides) -> InferenceSettings:
        presets = {
            "single": cls(),
            "ntire24": cls(name="ntire24", tile=384, overlap=96, ensemble="transpose", square_tiles=True),
        }
        if name not in presets:
            raise ConfigError(f"unknown inference setting {name!r}; known: {', '.join(presets)}")
        return replace(presets[name], **overrides)

    @property
    def label(self) -> str:
        """The setting as recorded: its name, plus precision when not fp32."""
        return self.name if self.precision == "fp32" else f"{self.name}+{self.precision}"

    def as_dict(self) -> dict:
        return asdict(self)


def _symmetric_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    # Edge-including mirror (numpy's "symmetric"), built from flipped copies like the official script.
    while ph > 0:
        step = min(ph, x.shape[-2])
        x = torch.cat([x, x.flip(-2)[..., :step, :]], -2)
        ph -= step
    while pw > 0:
        step = min(pw, x.shape[-1])
        x = torch.cat([x, x.flip(-1)[..., :step]], -1)
        pw -= step
    return x


def pad_image(x: torch.Tensor, multiple: int, mode: str) -> torch.Tensor:
    """Pad bottom/right so H and W are multiples of ``multiple`` (see the module doc for modes)."""
    h, w = x.shape[-2:]
    if mode == "official32":
        ph, pw = (h // multiple + 1) * multiple - h, (w // multiple + 1) * multiple - w
        return _symmetric_pad(x, ph, pw)
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0 or mode == "none":
        return x
    if mode == "symmetric":
        return _symmetric_pad(x, ph, pw)
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"  # reflect cannot pad more than the size; tiny images fall back
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def tile_origins(size: int, tile: int, overlap: int, align: int) -> list[int]:
    """Tile starts along one axis: every ``tile - overlap`` (rounded down to ``align``), plus a
    last tile reaching the far edge. Every start is a multiple of ``align``: when ``size - tile``
    is not, the last start is rounded up and that tile is cut short by the edge (a flush tile
    would see the JPEG 8x8 grid at another phase)."""
    if tile >= size:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride))
    starts.append(-(-(size - tile) // align) * align)
    return sorted(set(starts))


class TorchRestorer:
    """A restorer around one or more torch networks (several = checkpoint averaging)."""

    def __init__(self, nets, info: ModelInfo, settings: InferenceSettings | None = None, device: str = "cpu"):
        self.nets = list(nets)
        self.info = info
        self.settings = settings or InferenceSettings()
        self.device = torch.device(device)
        if self.settings.precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            raise ConfigError("--precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has "
                              "none and bf16 would run about 200x slower than fp32: use --precision fp32")
        for n in self.nets:
            if isinstance(n, torch.nn.Module):
                n.to(self.device)
                if self.settings.channels_last:
                    n.to(memory_format=torch.channels_last)
        self.info.extra["setting"] = self.settings.as_dict()

    # -- one forward ------------------------------------------------------------------------------
    def _forward(self, net, x: torch.Tensor, qf_input: torch.Tensor | None):
        if self.settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=self.settings.precision == "bf16")
        with autocast:
            out = net(x, qf_input=qf_input) if qf_input is not None else net(x)
        qf_hat = None
        if isinstance(out, (tuple, list)):  # FBCNN: (image, predicted 1 - QF/100)
            out, qf_hat = out[0], out[1]
        return out.float(), qf_hat

    def _run_padded(self, net, x: torch.Tensor, qf_input, tile: int | None):
        """Run ``net`` on an already padded batch, whole or in tiles; returns (out, qf_hat)."""
        h, w = x.shape[-2:]
        # One tile covering the image means a whole-image forward; under the official square-tile rule
        # that holds only for a square image no larger than the tile.
        side = None if tile is None else min(tile, h, w) if self.settings.square_tiles else tile
        if side is None or (side >= h and side >= w):
            return self._forward(net, x, qf_input)
        align = math.lcm(8, max(1, self.info.pad_multiple))
        tile = max(align, tile // align * align)
        th = tw = min(tile, h, w)  # square tiles, as the official test scripts
        out = torch.zeros((x.shape[0], x.shape[1], h, w), device=x.device)
        count = torch.zeros((1, 1, h, w), device=x.device)
        qfs = []
        for y0 in tile_origins(h, th, self.settings.overlap, align):
            for x0 in tile_origins(w, tw, self.settings.overlap, align):
                o, q = self._forward(net, x[..., y0:y0 + th, x0:x0 + tw], qf_input)
                out[..., y0:y0 + th, x0:x0 + tw] += o
                count[..., y0:y0 + th, x0:x0 + tw] += 1
                if q is not None:
                    qfs.append(q.float())
        return out / count, (torch.stack(qfs).mean(0) if qfs else None)

    def _run(self, x: torch.Tensor, qf_input, tile):
        h, w = x.shape[-2:]
        multiple = max(1, self.info.pad_multiple)
        outs, qfs = [], []
        for net in self.nets:
            views = [False, True] if self.settings.ensemble == "transpose" else [False]
            for transposed in views:
                xi = x.transpose(-1, -2) if transposed else x
                xp = pad_image(xi, multiple, self.info.pad_mode) if multiple > 1 else xi
                o, q = self._run_padded(net, xp, qf_input, tile)
                o = o[..., : xi.shape[-2], : xi.shape[-1]]
                outs.append(o.transpose(-1, -2) if transposed else o)
                if q is not None:
                    qfs.append(q)
        # Ensemble members are clamped before averaging, as the NTIRE script does.
        out = torch.stack([o.clamp(0, 1) for o in outs]).mean(0) if len(outs) > 1 else outs[0]
        assert out.shape[-2:] == (h, w)
        return out, (torch.stack(qfs).mean(0) if qfs else None)

    # -- the restorer interface -----------------------------------------------------------------------
    @torch.inference_mode()
    def restore(self, img: np.ndarray, qf: int | None = None) -> Restored:
        gray = img.ndim == 2
        x = torch.from_numpy(np.ascontiguousarray(img)).to(self.device)
        x = (x[None, None] if gray else x.permute(2, 0, 1)[None]).float() / 255.0
        if gray and self.info.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif not gray and self.info.channels == 1:
            raise ConfigError(f"model {self.info.name!r} takes gray images; this dataset is colour")
        qf_input = None
        if qf is not None and self.info.takes_qf:
            qf_input = torch.full((1, 1), 1 - qf / 100, device=self.device)
        tile = self.settings.tile
        if tile is None and img.shape[0] * img.shape[1] > self.settings.auto_tile_pixels:
            tile = self.settings.auto_tile
        start = time.perf_counter()
        while True:
            try:
                out, qf_hat = self._run(x, qf_input, tile)
                break
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if "out of memory" not in str(exc) and "can't allocate memory" not in str(exc):
                    raise
                side = max(img.shape[:2]) if tile is None else tile
                if side // 2 < self.settings.min_tile:
                    raise
                tile = side // 2  # retry smaller; the result is the same up to tile seams
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if gray and out.shape[1] == 3:
            out = out.mean(1, keepdim=True)
        out, nonfinite = to_uint8(out)
        out = out.cpu()
        res = out[0, 0].numpy() if gray else out[0].permute(1, 2, 0).numpy()
        extras = {}
        if qf_hat is not None:
            extras["qf_pred"] = round(float(100 * (1 - qf_hat.flatten()[0])), 4)
        if tile is not None and tile != self.settings.tile:
            extras["tile"] = tile
        return Restored(np.ascontiguousarray(res), seconds, extras, nonfinite)
