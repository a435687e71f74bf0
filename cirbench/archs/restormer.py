"""Restormer building blocks shared by PromptIR and PromptCIR.

Module and parameter names follow the official Restormer / PromptIR / PromptCIR code so that
``state_dict`` keys of the models built from these blocks match the released checkpoints
(e.g. ``norm1.body.weight``, ``attn.qkv_dwconv.weight``, ``ffn.project_in.weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BiasFreeLayerNorm",
    "WithBiasLayerNorm",
    "LayerNorm",
    "Attention",
    "FeedForward",
    "TransformerBlock",
    "OverlapPatchEmbed",
    "Downsample",
    "Upsample",
]

_LN_EPS = 1e-5


class BiasFreeLayerNorm(nn.Module):
    """Restormer's 'BiasFree' norm over the last dim: ``x / sqrt(var + eps) * weight``.

    The mean is *not* subtracted from ``x`` (only used inside the variance), as in the official code.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + _LN_EPS) * self.weight


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the last dim (biased variance, eps 1e-5, learnable weight and bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Fused kernel; numerically the same formula as the official mean/var implementation.
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, _LN_EPS)


class LayerNorm(nn.Module):
    """Per-pixel LayerNorm over the channels of an NCHW map (Restormer's ``LayerNorm``).

    The official code rearranges to ``(B, HW, C)`` and back; a channels-last *view* does the same
    without the two copies.
    """

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias"):  # noqa: N803 (official kwarg name)
        super().__init__()
        if LayerNorm_type == "BiasFree":
            self.body = BiasFreeLayerNorm(dim)
        else:
            self.body = WithBiasLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# Without autograd, the 1x1 -> depthwise 3x3 stems of GDFN and MDTA run in horizontal bands of about this
# many pixels on maps above twice that size: their 2-3x-wider intermediates then exist for one band at a time
# (issue 7's memory goal). Every op involved is per pixel or 3x3-local, so the result is the whole-map one.
BAND_PIXELS = 32768


def _use_bands(x: torch.Tensor) -> bool:
    h, w = x.shape[-2:]
    return not torch.is_grad_enabled() and h * w > 2 * BAND_PIXELS and h > 2 * max(1, BAND_PIXELS // w)


def banded_stem(x: torch.Tensor, pointwise, dwconv=None, post=None) -> torch.Tensor:
    """``post(dwconv(pointwise(x)))`` computed in row bands, each with a one-row halo for the 3x3 conv.

    ``dwconv=None``: ``pointwise`` is the whole (per-pixel then 3x3-local) stem. ``post`` (default: identity)
    must act per pixel. The output keeps the memory format of the first band's result.
    """
    h, w = x.shape[-2:]
    rows = max(1, BAND_PIXELS // w)
    out = None
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
        # The conv zero-pads the band; only rows with real neighbours (or the image edge) are kept.
        y = pointwise(x[:, :, lo:hi])
        if dwconv is not None:
            y = dwconv(y)
        y = y[:, :, r0 - lo : r1 - lo]
        if post is not None:
            y = post(y)
        if out is None:
            fmt = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) else None
            out = torch.empty(
                (*y.shape[:2], h, w), dtype=y.dtype, device=y.device, memory_format=fmt or torch.contiguous_format
            )
        out[:, :, r0:r1] = y
    return out


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN): 1x1 -> depthwise 3x3 -> GELU gate -> 1x1.

    Without autograd, large maps run in bands (:func:`banded_stem`): same result, a fraction of the memory.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        h2 = hidden * 2
        self.dwconv = nn.Conv2d(h2, h2, kernel_size=3, padding=1, groups=h2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(x1) * x2`` of the 1x1 -> depthwise 3x3 stem, before ``project_out``.

        The two gate halves are computed as separate convs with the weight halves: every output channel
        of a 1x1 or a depthwise conv depends on its own weights only, so this is the official
        ``chunk(2)`` of the whole-width convs, while each half stays a dense tensor in the input's memory
        format (strided channel slices of a channels-last map make the elementwise gate slow).
        """
        hid = self.project_out.in_channels
        wi, bi = self.project_in.weight, self.project_in.bias
        wd, bd = self.dwconv.weight, self.dwconv.bias
        halves = []
        for sl in (slice(0, hid), slice(hid, 2 * hid)):
            t = F.conv2d(x, wi[sl], None if bi is None else bi[sl])
            halves.append(F.conv2d(t, wd[sl], None if bd is None else bd[sl], padding=1, groups=hid))
        x1, x2 = halves
        if torch.is_grad_enabled():
            return F.gelu(x1) * x2
        return F.gelu(x1).mul_(x2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_bands(x):
            return banded_stem(x, self._stem, post=self.project_out)
        return self.project_out(self._stem(x))


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention across channels, not pixels.

    q and k are L2-normalised over the spatial axis, so the (C/heads x C/heads) attention map is cheap
    for any image size.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = banded_stem(x, self.qkv, self.qkv_dwconv) if _use_bands(x) else self.qkv_dwconv(self.qkv(x))
        qkv = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.unbind(1)
        if torch.is_grad_enabled():
            q = F.normalize(q, dim=-1)
            k = F.normalize(k, dim=-1)
        else:  # F.normalize's arithmetic, in place
            q = q.div_(q.norm(dim=-1, keepdim=True).clamp_min_(1e-12))
            k = k.div_(k.norm(dim=-1, keepdim=True).clamp_min_(1e-12))
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    """Restormer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 (official kwarg name)
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding of the input image."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """conv3x3 C -> C/2 then PixelUnshuffle(2): C channels at H -> 2C channels at H/2."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """conv3x3 C -> 2C then PixelShuffle(2): C channels at H -> C/2 channels at 2H."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
