"""Restormer building blocks shared by PromptIR and PromptCIR.

Module and parameter names follow the official Restormer / PromptIR / PromptCIR code so that
``state_dict`` keys of the models built from these blocks match the released checkpoints
(e.g. ``norm1.body.weight``, ``attn.qkv_dwconv.weight``, ``ffn.project_in.weight``).

The blocks compute on channels-last data: a ``(B, H, W, C)`` view of an NCHW tensor in the
channels-last memory format is contiguous, so LayerNorm runs on it directly and a 1x1 conv is one
matrix product (:func:`.kernels.pointwise`). Without autograd (:func:`.kernels.fast_path`),
:class:`TransformerBlock` also streams the map in row bands and updates its residual in place (see
:data:`.kernels.BAND_PIXELS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import (
    add_product_,
    depthwise3x3,
    fast_path,
    nhwc,
    pad_out,
    padded_width,
    pointwise,
    pointwise_dw,
    stem_bands,
)

__all__ = [
    "BiasFreeLayerNorm",
    "WithBiasLayerNorm",
    "LayerNorm",
    "Attention",
    "FeedForward",
    "TransformerBlock",
    "TransformerBlocks",
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
    without the two copies (and without any copy when the map is channels-last in memory).
    """

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias"):  # noqa: N803 (official kwarg name)
        super().__init__()
        if LayerNorm_type == "BiasFree":
            self.body = BiasFreeLayerNorm(dim)
        else:
            self.body = WithBiasLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN): 1x1 -> depthwise 3x3 -> GELU gate -> 1x1."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        h2 = hidden * 2
        self.dwconv = nn.Conv2d(h2, h2, kernel_size=3, padding=1, groups=h2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in and out (channels-last memory out)."""
        return self.nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The GDFN of a ``(B, H, W, C)`` map."""
        return pointwise(self.gate(x), self.project_out)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """``gelu(x1) * x2`` of the 1x1 -> depthwise 3x3 stem, ``(B, H, W, hidden)``.

        The two gate halves are computed as separate products with the weight halves: every output
        channel of a 1x1 or a depthwise conv depends on its own weights only, so this is the official
        ``chunk(2)`` of the whole-width convs, while each half stays a dense tensor (an elementwise op on
        strided channel slices is several times slower).
        """
        x1, x2 = (pointwise_dw(x, *p) for p in self.halves())
        return F.gelu(x1) * x2

    def halves(self, width: int | None = None) -> list[tuple]:
        """``(weight, bias, dw_weight, dw_bias)`` of each gate half, output channels zero-padded to ``width``."""
        hid = self.project_out.in_channels
        width = width or hid
        wi, bi = self.project_in.weight.flatten(1), self.project_in.bias
        wd, bd = self.dwconv.weight, self.dwconv.bias
        return [
            tuple(None if t is None else pad_out(t[sl], width) for t in (wi, bi, wd, bd))
            for sl in (slice(0, hid), slice(hid, 2 * hid))
        ]

    def add_to_(self, x: torch.Tensor, norm) -> None:
        """``x += GDFN(norm(x))`` in place for one ``(H, W, C)`` contiguous map, in row bands (no autograd)."""
        hid = self.project_out.in_channels
        hp = padded_width(hid)
        wo = F.pad(self.project_out.weight.flatten(1), (0, hp - hid))
        for r0, r1, (x1, x2) in stem_bands(x, norm, self.halves(hp)):
            add_product_(x[r0:r1], F.gelu(x1).mul_(x2), wo, self.project_out.bias)


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
        """NCHW in and out (channels-last memory out)."""
        b, c, h, w = x.shape
        nh = self.num_heads
        qkv = depthwise3x3(pointwise(x.permute(0, 2, 3, 1), self.qkv), self.qkv_dwconv.weight, self.qkv_dwconv.bias)
        # (B, H, W, 3C) -> 3 x (B, heads, C/heads, HW)
        q, k, v = qkv.reshape(b, h * w, 3, nh, c // nh).permute(2, 0, 3, 4, 1).unbind(0)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = (attn.softmax(dim=-1) @ v).permute(0, 3, 1, 2).reshape(b, h, w, c)
        return pointwise(out, self.project_out).permute(0, 3, 1, 2)

    def add_to(self, x: torch.Tensor, out: torch.Tensor, v_buf: torch.Tensor, norm) -> None:
        """``out = x + MDTA(norm(x))`` for one ``(H, W, C)`` contiguous map (no autograd).

        One banded pass accumulates the per-head Gram matrices ``q k^T`` and the squared norms of q and k
        (so ``normalize(q) @ normalize(k)^T`` needs neither q nor k stored) and keeps v in ``v_buf``; the
        attention and ``project_out`` then fold into one ``C x C`` matrix applied to v in a single GEMM.
        """
        h, w, c = x.shape
        nh = self.num_heads
        d = c // nh
        stem = (self.qkv.weight.flatten(1), self.qkv.bias, self.qkv_dwconv.weight, self.qkv_dwconv.bias)
        gram = x.new_zeros(nh, d, d, dtype=torch.float32)  # accumulators stay fp32 in any precision
        sq = x.new_zeros(2, c, dtype=torch.float32)
        for r0, r1, (t,) in stem_bands(x, norm, [stem]):
            t = t.reshape(-1, 3 * c)
            q, k = t[:, :c], t[:, c : 2 * c]
            qt, kh = q.unflatten(1, (nh, d)).permute(1, 2, 0), k.unflatten(1, (nh, d)).transpose(0, 1)
            if q.dtype == gram.dtype:
                gram.baddbmm_(qt, kh)
            else:
                gram += torch.bmm(qt, kh)
            sq[0] += q.square().sum(0, dtype=torch.float32)
            sq[1] += k.square().sum(0, dtype=torch.float32)
            v_buf[r0:r1].view(-1, c).copy_(t[:, 2 * c :])
        # F.normalize divides by max(norm, 1e-12).
        norms = sq.sqrt_().clamp_min_(1e-12).view(2, nh, d)
        attn = gram / (norms[0][:, :, None] * norms[1][:, None, :]) * self.temperature
        mix = (self.project_out.weight.flatten(1).float() @ torch.block_diag(*attn.softmax(dim=-1))).to(x.dtype)
        torch.addmm(x.view(-1, c), v_buf.view(-1, c), mix.t(), out=out.view(-1, c))
        if self.project_out.bias is not None:
            out.add_(self.project_out.bias)


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
        """NCHW in and out (channels-last memory out)."""
        if fast_path():
            xl = nhwc(x)
            return self.infer(xl, torch.empty_like(xl), torch.empty_like(xl)).permute(0, 3, 1, 2)
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    def infer(self, x: torch.Tensor, out: torch.Tensor, v_buf: torch.Tensor) -> torch.Tensor:
        """The block on a contiguous ``(B, H, W, C)`` map into ``out`` (no autograd); ``v_buf``: workspace."""
        for b in range(x.shape[0]):
            self.attn.add_to(x[b], out[b], v_buf[b], self.norm1.body)
            self.ffn.add_to_(out[b], self.norm2.body)
        return out


class TransformerBlocks(nn.Sequential):
    """A chain of :class:`TransformerBlock` (``nn.Sequential`` keys); without autograd the blocks share
    two output maps and a workspace instead of allocating their own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_path() or len(self) == 0:
            return super().forward(x)
        xl = nhwc(x)
        v_buf = torch.empty_like(xl)
        outs = [torch.empty_like(xl), torch.empty_like(xl) if len(self) > 1 else None]
        for i, blk in enumerate(self):
            xl = blk.infer(xl, outs[i % 2], v_buf)
        return xl.permute(0, 3, 1, 2)


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
