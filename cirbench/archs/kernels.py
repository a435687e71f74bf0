"""CPU-minded kernels the Restormer and HAT blocks share at inference: channels-last 1x1 convs as GEMMs,
depthwise 3x3 convs, row bands sized for the caches, in-place residual products, GEMM-friendly widths.

They change how the blocks compute, never what: every one is checked against the plain path in the tests
(``tests/archs``), and ``docs/performance.md`` has the measurements behind each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BAND_PIXELS", "ACCEL_BAND_PIXELS", "fast_path", "band_rows", "autocast_on", "compute_dtype", "nhwc",
           "pointwise", "conv1x1", "depthwise3x3", "padded_width", "pad_out", "stem_bands", "pointwise_dw",
           "add_product_"]

# Without autograd, per-pixel and 3x3-local work runs in row bands of about this many pixels (each band
# with the halo rows its 3x3 convs need) on the CPU. A band's intermediates, 2-3x wider than the map, then
# stay small: they stay in the CPU caches between one op and the next (oneDNN's depthwise conv ran 3x faster
# on a 5 MB band than on an 18 MB one), and they come from the allocator's free lists instead of fresh
# pages the kernel must fault in and zero. docs/performance.md has the measurements.
BAND_PIXELS = 4096
# On an accelerator, bands only bound memory: small ones would cost a kernel launch per op and band.
ACCEL_BAND_PIXELS = 1 << 22


def fast_path() -> bool:
    """True when the banded, in-place inference code may run: autograd is off (training keeps the plain path)."""
    return not torch.is_grad_enabled()


def band_rows(w: int, device: torch.device | str = "cpu") -> int:
    """Rows per band for a map ``w`` pixels wide on ``device``."""
    pixels = BAND_PIXELS if torch.device(device).type == "cpu" else ACCEL_BAND_PIXELS
    return max(1, pixels // w)


def autocast_on(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device type."""
    kind = x.device.type
    return torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls and convs produce for ``x`` here: autocast's when it is on, else ``x``'s."""
    return torch.get_autocast_dtype(x.device.type) if autocast_on(x) else x.dtype


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C)`` contiguous view of an NCHW tensor (a copy only if it is not channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 ``conv`` applied to channels-last ``(..., C)`` data: one matrix product.

    Torch runs a 1x1 ``Conv2d`` on one thread through its slow reference convolution (see
    ``torch._C._select_conv_backend``); as a GEMM it runs at the BLAS rate on any thread count.
    """
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv of a channels-last NCHW map as one matrix product (:func:`pointwise`)."""
    return pointwise(x.permute(0, 2, 3, 1), conv).permute(0, 3, 1, 2)


def depthwise3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise 3x3 conv (zero padding 1) of a ``(B, H, W, C)`` tensor, channels-last in and out.

    oneDNN's channels-last depthwise kernel is several times faster than the NCHW one.
    """
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, padding=1, groups=weight.shape[0])
    return y.permute(0, 2, 3, 1)


def padded_width(n: int) -> int:
    """``n`` rounded up to a multiple of 8: MKL's GEMM and oneDNN's depthwise kernels lose up to half their
    speed on output widths such as GDFN's 255 or 127 channels. Padded channels get zero weights."""
    return -(-n // 8) * 8


def pad_out(t: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad dim 0 of a weight or bias to ``n``."""
    if t.shape[0] == n:
        return t
    return torch.cat([t, t.new_zeros(n - t.shape[0], *t.shape[1:])])


def stem_bands(x: torch.Tensor, norm, projections):
    """Row bands of ``depthwise3x3(pointwise(norm(x)))`` for one ``(H, W, C)`` map (no autograd).

    ``projections``: ``(weight (N, C), bias, dw_weight (N, 1, 3, 3), dw_bias)`` per output. Yields
    ``(r0, r1, [(r1 - r0, W, N) per projection])``. Each image row is normed and projected once: a band's
    buffer starts with the two projected rows above it, kept from the band before (the 3x3 halo), and the
    depthwise conv pads only the width. Band ``[r0, r1)`` reads ``x`` rows below ``r1 + 1`` and above
    ``r0`` only, so the caller may overwrite rows ``r0:r1`` of ``x`` before taking the next band.
    """
    h, w, c = x.shape
    rows = band_rows(w, x.device)
    bufs = [x.new_empty(rows + 2, w, p[0].shape[0], dtype=compute_dtype(x)) for p in projections]
    prev = 0
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        n = r1 - r0
        # Buffer row j holds image row r0 - 1 + j; new rows [a, b) are projected into it.
        a, b = (0 if r0 == 0 else r0 + 1), min(r1 + 1, h)
        xn = norm(x[a:b]).reshape(-1, c) if b > a else None
        outs = []
        for buf, (wp, bp, wd, bd) in zip(bufs, projections, strict=True):
            if r0 == 0:
                buf[0].zero_()  # the conv's zero padding above the image
            else:
                buf[:2] = buf[prev : prev + 2].clone() if prev < 2 else buf[prev : prev + 2]
            if xn is not None:
                dst = buf[a - r0 + 1 : b - r0 + 1].view(-1, wp.shape[0])
                # Explicit dtypes: out= products are outside autocast, whose dtype the buffer has.
                xn_, wp_ = xn.to(dst.dtype), wp.to(dst.dtype)
                if bp is None:
                    torch.mm(xn_, wp_.t(), out=dst)
                else:
                    torch.addmm(bp.to(dst.dtype), xn_, wp_.t(), out=dst)
            if r1 == h:
                buf[n + 1].zero_()  # and below it
            y = F.conv2d(buf[: n + 2][None].permute(0, 3, 1, 2), wd, bd, padding=(0, 1), groups=wd.shape[0])
            outs.append(y[0].permute(1, 2, 0))
        prev = n
        yield r0, r1, outs


def pointwise_dw(x: torch.Tensor, weight, bias, dw_weight, dw_bias) -> torch.Tensor:
    """``depthwise3x3(1x1(x))`` of a ``(B, H, W, C)`` map (the whole-map form of :func:`stem_bands`)."""
    return depthwise3x3(F.linear(x, weight, bias), dw_weight, dw_bias)


def add_product_(out: torch.Tensor, a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``out += a @ w.T (+ bias)`` in place for contiguous ``(..., C)`` tensors: one GEMM, no temporary
    (one temporary when ``a`` has another dtype than ``out``, as under autocast)."""
    out2d, a2d = out.view(-1, out.shape[-1]), a.reshape(-1, a.shape[-1])
    w = w.to(a.dtype)
    if a.dtype == out.dtype:
        out2d.addmm_(a2d, w.t())
    else:
        out2d.add_(torch.mm(a2d, w.t()))
    if bias is not None:
        out2d.add_(bias)
