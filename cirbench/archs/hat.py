"""HAT-derived residual hybrid attention group (RHAG) as modified by PromptCIR.

Differences from HAT (see spec section 1.3): the per-block MLP is replaced by Restormer's GDFN
(``ffn``, expansion 2.66, ``bias=True``), the attention mask is recomputed from the actual H x W in
every forward, and the relative-position-index tensors live on the top-level model and are passed
in at call time.

Internally an RHAG works on a channels-last ``(B, H, W, C)`` map; that is the same memory layout as
HAT's ``(B, HW, C)`` tokens. Windows are gathered from it by pixel index (:func:`window_order`), which
applies the cyclic shift of SW-MSA at the same time, so neither ``torch.roll`` nor a window partition
copy of the map is made; attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
with the relative position bias (and, for shifted windows, the -100 region mask) as an additive float
mask. Only the windows in the last window-row/column of a shifted map carry a non-zero mask; they are
ordered last and attended as groups that share one mask, so no ``(num_windows, N, N)`` mask is built.

Without autograd the blocks update the residual map in place, a few window rows at a time
(:data:`CHUNK_PIXELS`), the outputs scattered back by the same pixel index (``index_add_``); the
per-pixel and 3x3-local work (LayerNorm, CAB, GDFN) runs in row bands (``restormer.BAND_PIXELS``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import autocast_on, band_rows, compute_dtype, fast_path
from .restormer import FeedForward

__all__ = [
    "CHUNK_PIXELS",
    "calculate_rpi_sa",
    "calculate_rpi_oca",
    "window_order",
    "window_partition",
    "ChannelAttention",
    "CAB",
    "WindowAttention",
    "HAB",
    "OCAB",
    "AttenBlocks",
    "RHAG",
]

# Additive logit for token pairs from different shifted regions (HAT / Swin value).
MASK_VALUE = -100.0

# Without autograd, HAB window attention and OCAB run over groups of whole window rows of about this many
# pixels on the CPU: their qkv / window / output copies (~12 C floats per pixel, more for OCAB's overlapping
# keys) then exist for one group at a time and stay in the CPU caches. Windows are attended independently,
# so the result is the whole-map one.
CHUNK_PIXELS = 16384
ACCEL_CHUNK_PIXELS = 1 << 22  # on an accelerator: bounded memory, few kernel launches


def _chunk_rows(h: int, w: int, window_size: int, device: torch.device | str = "cpu") -> int | None:
    """Image rows per attention chunk (a multiple of the window size) without autograd, else None."""
    if not fast_path():
        return None  # training keeps the whole-map path
    pixels = CHUNK_PIXELS if torch.device(device).type == "cpu" else ACCEL_CHUNK_PIXELS
    return min(h, max(1, pixels // (window_size * w)) * window_size)


# --------------------------------------------------------------------------------------------------
# Relative position indices and masks (exactly as HAT computes them)
# --------------------------------------------------------------------------------------------------
def _grid(size: int) -> torch.Tensor:
    """(2, size*size) row/col coordinates of a size x size window, row-major."""
    ar = torch.arange(size)
    return torch.stack(torch.meshgrid(ar, ar, indexing="ij")).flatten(1)


def calculate_rpi_sa(window_size: int) -> torch.Tensor:
    """Relative position index for window self-attention, int64 ``(ws*ws, ws*ws)``.

    Entry (i, j) indexes a ``(2ws-1)^2`` bias table by the offset of query i from key j.
    """
    coords = _grid(window_size)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def overlap_window_size(window_size: int, overlap_ratio: float) -> int:
    """Side of OCAB's key/value windows: ``ws + int(overlap_ratio * ws)``."""
    return window_size + int(overlap_ratio * window_size)


def calculate_rpi_oca(window_size: int, overlap_ratio: float = 0.5) -> torch.Tensor:
    """Relative position index for OCAB, int64 ``(ws*ws, wse*wse)`` with ``wse`` the overlap window.

    Entry (i, j) indexes a ``(ws + wse - 1)^2`` table by (key j of the extended window) - (query i).
    HAT's offset ``ws - wse + 1`` leaves some entries negative; tensor indexing wraps them to the end
    of the table. Kept as is: trained bias tables (and the checkpoint buffer) depend on it.
    """
    ws_ext = overlap_window_size(window_size, overlap_ratio)
    ori, ext = _grid(window_size), _grid(ws_ext)
    rel = (ext[:, None, :] - ori[:, :, None]).permute(1, 2, 0) + (window_size - ws_ext + 1)
    return rel[..., 0] * (window_size + ws_ext - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws, ws, C), windows row-major within each image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, c)


def _region_labels(length: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Swin region label (0, 1, 2) of each row (or column) of a cyclically shifted map."""
    lab = torch.zeros(length)
    lab[length - window_size : length - shift_size] = 1
    lab[length - shift_size :] = 2
    return lab


@lru_cache(maxsize=16)
def _boundary_masks(window_size: int, shift_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three non-zero mask patterns ``(N, N)`` of a shifted map (row, column, corner); cached, read-only.

    Windows in the last window-row see row labels (1, 2), in the last column column labels (1, 2),
    the corner both; every other window has label 0 everywhere and needs no mask.
    """
    lab = _region_labels(window_size, window_size, shift_size)  # labels within one boundary window
    zeros = torch.zeros(window_size)
    masks = []
    for rows, cols in ((lab, zeros), (zeros, lab), (lab, lab)):
        flat = (rows[:, None] * 3 + cols[None, :]).flatten()
        diff = flat[None, :] - flat[:, None]
        masks.append(torch.zeros_like(diff).masked_fill_(diff != 0, MASK_VALUE))
    return masks[0], masks[1], masks[2]


def window_order(
    h: int, w: int, window_size: int, roll: int, masked: bool, row0: int = 0, row1: int | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Flat pixel indices (into ``h * w``) of the windows of window rows ``row0:row1``, and windows per group.

    Pixels are window-major, row-major within a window. ``roll``: the windows tile the map cyclically
    shifted by ``-roll`` (pixel (i, j) of the shifted map is pixel ((i + roll) % h, (j + roll) % w)), as
    ``torch.roll`` then :func:`window_partition` would give. ``masked``: windows are ordered as the
    SW-MSA mask groups (interior, last column, last row, corner: the group sizes are returned), each
    group in row-major order; otherwise in row-major order, one group.
    """
    nwh, nww = h // window_size, w // window_size
    row1 = nwh if row1 is None else row1
    wr = torch.arange(row0, row1).repeat_interleave(nww)
    wc = torch.arange(nww).repeat(row1 - row0)
    counts = [len(wr)]
    if masked:
        group = (wc == nww - 1).long() + 2 * (wr == nwh - 1).long()
        order = torch.argsort(group, stable=True)
        wr, wc = wr[order], wc[order]
        counts = torch.bincount(group, minlength=4).tolist()
    i = torch.arange(window_size)
    rows = (wr[:, None] * window_size + i + roll) % h
    cols = (wc[:, None] * window_size + i + roll) % w
    return (rows[:, :, None] * w + cols[:, None, :]).flatten(), counts


def _inverse(idx: torch.Tensor) -> torch.Tensor:
    """Inverse of a permutation index."""
    inv = torch.empty_like(idx)
    inv[idx] = torch.arange(len(idx), device=idx.device)
    return inv


class _Scratch:
    """Band buffers reused by every band of one inference call (no autograd).

    A band's temporaries then land in memory the previous band used, warm in the caches, instead of fresh
    allocations the kernel must fault in and zero. ``get`` returns a buffer per name and shape; a new one
    is zero-filled (so padding that is never written stays zero).
    """

    def __init__(self, like: torch.Tensor):
        self.like = like
        self.bufs: dict[tuple, torch.Tensor] = {}

    @classmethod
    def for_(cls, x: torch.Tensor) -> _Scratch | None:
        """Scratch for computing on ``x``; None under autocast (its products pick their own dtype)."""
        return None if autocast_on(x) else cls(x)

    def get(self, name: str, *shape: int) -> torch.Tensor:
        key = (name, *shape)
        if key not in self.bufs:
            self.bufs[key] = self.like.new_zeros(shape)
        return self.bufs[key]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor | None):
    """``F.linear`` of ``(..., C)`` data, into ``out`` (contiguous, same leading shape) when given."""
    if out is None:
        return F.linear(x, weight, bias)
    x2, o2 = x.reshape(-1, x.shape[-1]), out.view(-1, out.shape[-1])
    if bias is None:
        torch.mm(x2, weight.t(), out=o2)
    else:
        torch.addmm(bias, x2, weight.t(), out=o2)
    return out


def _norm_into(out: torch.Tensor, x: torch.Tensor, norm: nn.Module) -> None:
    """``out = norm(x)`` for one ``(H, W, C)`` map, in row bands (no whole-map temporary)."""
    rows = band_rows(x.shape[1], x.device)
    for r0 in range(0, x.shape[0], rows):
        out[r0 : r0 + rows] = norm(x[r0 : r0 + rows])


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------
class ChannelAttention(nn.Module):
    """RCAN channel attention: x * sigmoid(conv1x1(relu(conv1x1(avgpool(x)))))."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)

    def weights(self, mean: torch.Tensor) -> torch.Tensor:
        """Per-channel factors ``(C,)`` for a map whose channel means are ``mean``."""
        return self.attention[1:](mean.view(1, -1, 1, 1)).view(-1)


class CAB(nn.Module):
    """Channel attention block: conv3x3 C->C/r, GELU, conv3x3 C/r->C, channel attention."""

    def __init__(self, num_feat: int, compress_ratio: int = 3, squeeze_factor: int = 16):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // compress_ratio, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(num_feat // compress_ratio, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)

    def convs_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The two convs of one ``(H, W, C)`` map into ``out``, in row bands; returns the channel factors.

        ``CAB(x) = out * factors``. As in ``restormer.stem_bands``, every row of the first conv is computed
        once: a band's buffer starts with the two rows above it, kept from the band before, and the second
        conv pads only the width.
        """
        conv1, act, conv2, ca = self.cab
        h, w, c = x.shape
        rows = band_rows(w, x.device)
        buf = x.new_empty(rows + 2, w, conv1.out_channels, dtype=compute_dtype(x))
        total = x.new_zeros(c, dtype=torch.float32)
        prev = 0
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = r1 - r0
            # Buffer row j holds image row r0 - 1 + j; rows [a, b) of the first conv are new.
            a, b = (0 if r0 == 0 else r0 + 1), min(r1 + 1, h)
            if r0 == 0:
                buf[0].zero_()
            else:
                buf[:2] = buf[prev : prev + 2].clone() if prev < 2 else buf[prev : prev + 2]
            if b > a:
                lo, hi = max(a - 1, 0), min(b + 1, h)
                src = x[lo:hi][None].permute(0, 3, 1, 2)
                if lo == a or hi == b:  # zero rows beyond the image
                    src = F.pad(src, (0, 0, int(lo == a), int(hi == b)))
                t = F.conv2d(src, conv1.weight, conv1.bias, padding=(0, 1))[0].permute(1, 2, 0)
                torch.ops.aten.gelu.out(t, approximate=act.approximate, out=buf[a - r0 + 1 : b - r0 + 1])
            if r1 == h:
                buf[n + 1].zero_()
            t = F.conv2d(buf[: n + 2][None].permute(0, 3, 1, 2), conv2.weight, conv2.bias, padding=(0, 1))
            out[r0:r1] = t[0].permute(1, 2, 0)
            total += out[r0:r1].sum((0, 1), dtype=torch.float32)
            prev = n
        return ca.weights((total / (h * w)).to(x.dtype))


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (W-MSA / SW-MSA).

    Holds the parameters (``relative_position_bias_table``, ``qkv``, ``proj``) and attends windows
    gathered by :func:`window_order`.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, rpi: torch.Tensor) -> torch.Tensor:
        """(heads, N, N) additive bias gathered from the table."""
        n = self.window_size * self.window_size
        return self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def group_masks(self, rpi: torch.Tensor, masked: bool, like: torch.Tensor) -> list[torch.Tensor]:
        """The additive masks ``(1, heads, N, N)`` of the window groups of :func:`window_order`."""
        bias = self.position_bias(rpi).to(like.dtype)
        if not masked:
            return [bias.contiguous()[None]]
        row, col, corner = (m.to(like) for m in _boundary_masks(self.window_size, self.window_size // 2))
        return [bias.contiguous()[None]] + [(bias + m)[None] for m in (col, row, corner)]

    def forward(self, x: torch.Tensor, rpi: torch.Tensor, shift_size: int = 0) -> torch.Tensor:
        """Attention over non-overlapping windows of an (already cyclically shifted) map.

        Args:
            x: ``(B, H, W, C)`` normalised, shifted features; H and W multiples of the window size.
            rpi: ``(N, N)`` relative position index, N = ws*ws.
            shift_size: 0 for W-MSA; otherwise the shift whose region mask must be applied.
        Returns:
            ``(B, H, W, C)`` projected attention output, still in the shifted frame.
        """
        if fast_path():
            out = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
            self.add_to_(out, x.contiguous(), rpi, roll=0, masked=shift_size > 0)
            return out
        return self.whole(x, rpi, roll=0, masked=shift_size > 0)

    def whole(self, x: torch.Tensor, rpi: torch.Tensor, roll: int, masked: bool) -> torch.Tensor:
        """Projected attention of the windows of ``x`` (``(B, H, W, C)``) shifted by ``roll``, in x's frame."""
        b, h, w, c = x.shape
        idx, counts = window_order(h, w, self.window_size, roll, masked)
        idx = idx.to(x.device)
        y = self.attend(x.reshape(b, h * w, c)[:, idx], self.group_masks(rpi, masked, x), counts)
        return y[:, _inverse(idx)].view(b, h, w, c)

    def add_to_(self, x: torch.Tensor, xn: torch.Tensor, rpi: torch.Tensor, roll: int, masked: bool) -> None:
        """``x += attention(xn)`` in place (no autograd), a few window rows at a time.

        ``x`` and ``xn``: contiguous ``(B, H, W, C)``; windows as in :meth:`whole`.
        """
        b, h, w, c = x.shape
        ws = self.window_size
        masks = self.group_masks(rpi, masked, x)
        step = _chunk_rows(h, w, ws, x.device) // ws
        xf, xnf = x.view(b, h * w, c), xn.view(b, h * w, c)
        scratch = _Scratch.for_(x)
        for g0 in range(0, h // ws, step):
            idx, counts = window_order(h, w, ws, roll, masked, g0, min(h // ws, g0 + step))
            idx = idx.to(x.device)
            if scratch is None:
                tokens = xnf.index_select(1, idx)
            else:
                tokens = torch.index_select(xnf, 1, idx, out=scratch.get("tokens", b, len(idx), c))
            xf.index_add_(1, idx, self.attend(tokens, masks, counts, scratch).to(x.dtype))

    def attend(
        self, tokens: torch.Tensor, masks: list[torch.Tensor], counts: list[int], scratch: _Scratch | None = None
    ) -> torch.Tensor:
        """Projected attention of window-major tokens ``(B, windows * N, C)``, same shape out.

        Windows come in groups of ``counts`` (see :func:`window_order`), group i attended with ``masks[i]``.
        ``scratch`` (no autograd): reuse its buffers for the intermediates and the result.
        """
        b, p, c = tokens.shape
        nh, n = self.num_heads, self.window_size**2
        d, nw = c // nh, p // n

        def buf(name: str, *shape: int) -> torch.Tensor | None:
            return None if scratch is None else scratch.get(name, *shape)

        qkv = _linear(tokens, self.qkv.weight, self.qkv.bias, buf("qkv", b, p, 3 * c)).view(b, nw, n, 3, nh, d)
        out = buf("out", b, nw, n, nh, d)
        out = tokens.new_empty(b, nw, n, nh, d) if out is None else out
        start = 0
        for count, mask in zip(counts, masks, strict=True):
            if count == 0:
                continue
            sl = slice(start, start + count)
            start += count
            # (B * count, heads, N, d) views of qkv: the CPU flash kernel takes strided inputs.
            q, k, v = (qkv[:, sl, :, i].flatten(0, 1).transpose(1, 2) for i in range(3))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out[:, sl] = o.view(b, count, nh, n, d).transpose(2, 3)
        return _linear(out.view(b, p, c), self.proj.weight, self.proj.bias, buf("proj", b, p, c))


class HAB(nn.Module):
    """Hybrid attention block: (S)W-MSA + scaled CAB conv branch, then a GDFN feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        compress_ratio: int = 3,
        squeeze_factor: int = 16,
        conv_scale: float = 0.01,
        ffn_expansion_factor: float = 2.66,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.conv_scale = conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.norm2 = nn.LayerNorm(dim)
        # PromptCIR's change from HAT: GDFN (bias=True) instead of an MLP.
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias=True)

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor) -> torch.Tensor:
        """x: ``(B, H, W, C)`` channels-last features."""
        if fast_path():
            y = x.clone(memory_format=torch.contiguous_format)
            self.infer_(y, torch.empty_like(y), torch.empty_like(y), rpi_sa)
            return y
        s = self.shift_size
        xn = self.norm1(x)
        # Conv branch on the normed map; NCHW views of channels-last memory avoid copies.
        conv_x = self.conv_block(xn.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        attn_x = self.attn.whole(xn, rpi_sa, roll=s, masked=s > 0)
        x = x + attn_x + conv_x * self.conv_scale
        return x + self.ffn.nhwc(self.norm2(x))

    def infer_(self, x: torch.Tensor, xn: torch.Tensor, cab: torch.Tensor, rpi_sa: torch.Tensor) -> None:
        """The block in place on a contiguous ``(B, H, W, C)`` map (no autograd); ``xn``, ``cab``: workspace."""
        s = self.shift_size
        factors = []
        for b in range(x.shape[0]):
            _norm_into(xn[b], x[b], self.norm1)
            factors.append(self.conv_block.convs_into(xn[b], cab[b]) * self.conv_scale)
        self.attn.add_to_(x, xn, rpi_sa, roll=s, masked=s > 0)
        for b in range(x.shape[0]):
            x[b].addcmul_(cab[b], factors[b])
            self.ffn.add_to_(x[b], self.norm2)


class OCAB(nn.Module):
    """Overlapping cross-attention block.

    Queries come from non-overlapping ``ws x ws`` windows; keys/values from zero-padded overlapping
    ``wse x wse`` windows (``nn.Unfold(wse, stride=ws, padding=(wse-ws)//2)`` in HAT). Padded
    positions are exact zeros for k and v and are *not* masked, as in HAT.
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        overlap_ratio: float,
        num_heads: int,
        ffn_expansion_factor: float = 2.66,
    ):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.overlap_win_size = overlap_window_size(window_size, overlap_ratio)
        if (self.overlap_win_size - window_size) % 2:
            raise ValueError("int(window_size * overlap_ratio) must be even so the overlap windows tile")
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((window_size + self.overlap_win_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias=True)

    def position_bias(self, rpi: torch.Tensor) -> torch.Tensor:
        """(heads, ws*ws, wse*wse) additive bias gathered from the table."""
        n, m = self.window_size**2, self.overlap_win_size**2
        return self.relative_position_bias_table[rpi.view(-1)].view(n, m, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        """x: ``(B, H, W, C)`` channels-last features."""
        if fast_path():
            y = x.clone(memory_format=torch.contiguous_format)
            self.infer_(y, torch.empty_like(y), rpi_oca)
            return y
        b, h, w, c = x.shape
        mask = self.position_bias(rpi_oca).to(x.dtype).contiguous()[None]
        y, idx = self._attend_rows(self.norm1(x), mask, 0, h)
        x = x + y[:, _inverse(idx)].view_as(x)
        return x + self.ffn.nhwc(self.norm2(x))

    def infer_(self, x: torch.Tensor, xn: torch.Tensor, rpi_oca: torch.Tensor) -> None:
        """The block in place on a contiguous ``(B, H, W, C)`` map (no autograd); ``xn``: workspace."""
        b, h, w, c = x.shape
        for i in range(b):
            _norm_into(xn[i], x[i], self.norm1)
        mask = self.position_bias(rpi_oca).to(x.dtype).contiguous()[None]
        rows = _chunk_rows(h, w, self.window_size, x.device)
        xf = x.view(b, h * w, c)
        scratch = _Scratch.for_(x)
        for r0 in range(0, h, rows):
            y, idx = self._attend_rows(xn, mask, r0, min(h, r0 + rows), scratch)
            xf.index_add_(1, idx, y.to(x.dtype))
        for i in range(b):
            self.ffn.add_to_(x[i], self.norm2)

    def _attend_rows(
        self, xn: torch.Tensor, mask: torch.Tensor, r0: int, r1: int, scratch: _Scratch | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected cross-attention of the query rows ``r0:r1`` (whole window rows) of the normed map.

        Returns ``(B, P, C)`` window-major outputs and their flat pixel indices (:func:`window_order`).
        Keys and values come from those rows plus a halo of ``(wse - ws) / 2`` rows each side; beyond the
        image they are zeros, as HAT's zero-padded unfold gives. ``scratch`` (no autograd): reuse its
        buffers for the intermediates and the result.
        """
        b, h, w, c = xn.shape
        ws, wse, nh = self.window_size, self.overlap_win_size, self.num_heads
        d, nwh, nww = c // nh, (r1 - r0) // ws, w // ws
        nw, pad, n = nwh * nww, (wse - ws) // 2, ws * ws
        lo, hi = max(r0 - pad, 0), min(r1 + pad, h)
        top, bottom = pad - (r0 - lo), pad - (hi - r1)  # halo rows beyond the image

        def buf(name: str, *shape: int) -> torch.Tensor | None:
            return None if scratch is None else scratch.get(name, *shape)

        idx, _ = window_order(h, w, ws, 0, False, r0 // ws, r1 // ws)
        idx = idx.to(xn.device)
        xf = xn.reshape(b, h * w, c)
        tokens = xf[:, idx] if scratch is None else torch.index_select(xf, 1, idx, out=buf("tokens", b, nw * n, c))
        q = _linear(tokens, self.qkv.weight[:c], self.qkv.bias[:c], buf("q", b, nw * n, c))
        q = q.view(b * nw, n, nh, d).transpose(1, 2)

        # k and v with W zero-padded, and H where the halo leaves the image (after the bias: padding is zeros).
        kv = _linear(xn[:, lo:hi], self.qkv.weight[c:], self.qkv.bias[c:], buf("kv", b, hi - lo, w, 2 * c))
        padded = buf("padded", b, r1 - r0 + 2 * pad, w + 2 * pad, 2 * c)
        if padded is None:
            padded = F.pad(kv, (0, 0, pad, pad, top, bottom))
        else:  # its pad columns are never written; halo rows beyond the image are cleared for each band
            padded[:, :top].zero_()
            padded[:, padded.shape[1] - bottom :].zero_()
            padded[:, top : top + hi - lo, pad : pad + w] = kv
        # Overlapping windows as strided views: (B, nWh, nWw, 2, heads, d, wse_h, wse_w), then
        # (2, B*nW, heads, wse*wse, d), token order row-major in the window as nn.Unfold gives.
        kv = padded.unfold(1, wse, ws).unfold(2, wse, ws).unflatten(3, (2, nh, d)).permute(3, 0, 1, 2, 4, 6, 7, 5)
        windows = buf("windows", 2, b, nwh, nww, nh, wse, wse, d)
        windows = kv.reshape(kv.shape) if windows is None else windows.copy_(kv)
        k, v = windows.reshape(2, b * nw, nh, wse * wse, d)

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).view(b, nw, nh, n, d).transpose(2, 3)
        o = buf("out", b, nw, n, nh, d)
        o = out.reshape(b, nw * n, c) if o is None else o.copy_(out).view(b, nw * n, c)
        return _linear(o, self.proj.weight, self.proj.bias, buf("proj", b, nw * n, c)), idx


class AttenBlocks(nn.Module):
    """``depth`` HABs with alternating shift 0 / ws//2, then one OCAB (HAT's ``residual_group``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        compress_ratio: int,
        squeeze_factor: int,
        conv_scale: float,
        overlap_ratio: float,
        ffn_expansion_factor: float = 2.66,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            HAB(
                dim,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                compress_ratio=compress_ratio,
                squeeze_factor=squeeze_factor,
                conv_scale=conv_scale,
                ffn_expansion_factor=ffn_expansion_factor,
            )
            for i in range(depth)
        )
        self.overlap_attn = OCAB(dim, window_size, overlap_ratio, num_heads, ffn_expansion_factor)

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        if fast_path():
            # One copy of the input, updated in place by every block; two maps of workspace shared by all.
            y = x.clone(memory_format=torch.contiguous_format)
            xn, cab = torch.empty_like(y), torch.empty_like(y)
            for blk in self.blocks:
                blk.infer_(y, xn, cab, rpi_sa)
            self.overlap_attn.infer_(y, xn, rpi_oca)
            return y
        for blk in self.blocks:
            x = blk(x, rpi_sa)
        return self.overlap_attn(x, rpi_oca)


class RHAG(nn.Module):
    """Residual hybrid attention group on an NCHW map: ``conv3x3(blocks(x)) + x``.

    HAT's parameter-free patch (un)embedding is a layout change only, done here with permutes.

    Args:
        input_resolution: HAT's nominal resolution. HAT shrinks the window when the resolution is
            not larger than it, which the official PromptCIR cannot run (the shared position index
            would no longer fit), so such configurations are rejected here.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        compress_ratio: int = 3,
        squeeze_factor: int = 16,
        conv_scale: float = 0.01,
        overlap_ratio: float = 0.5,
        ffn_expansion_factor: float = 2.66,
        input_resolution: int | None = None,
    ):
        super().__init__()
        if input_resolution is not None and input_resolution <= window_size:
            raise ValueError(
                f"RHAG input_resolution {input_resolution} must exceed window_size {window_size} "
                "(raise img_size or lower window_size)"
            )
        self.window_size = window_size
        self.residual_group = AttenBlocks(
            dim,
            depth,
            num_heads,
            window_size,
            compress_ratio,
            squeeze_factor,
            conv_scale,
            overlap_ratio,
            ffn_expansion_factor,
        )
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.window_size or w % self.window_size:
            raise ValueError(f"RHAG input {h}x{w} is not a multiple of window_size {self.window_size}")
        y = self.conv(self.residual_group(x.permute(0, 2, 3, 1), rpi_sa, rpi_oca).permute(0, 3, 1, 2))
        return y.add_(x) if fast_path() and y.dtype == x.dtype else y + x
