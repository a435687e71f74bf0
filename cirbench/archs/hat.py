"""HAT-derived residual hybrid attention group (RHAG) as modified by PromptCIR.

Differences from HAT (see spec section 1.3): the per-block MLP is replaced by Restormer's GDFN
(``ffn``, expansion 2.66, ``bias=True``), the attention mask is recomputed from the actual H x W in
every forward, and the relative-position-index tensors live on the top-level model and are passed
in at call time.

Internally an RHAG works on a channels-last ``(B, H, W, C)`` map; that is the same memory layout as
HAT's ``(B, HW, C)`` tokens. Window attention and OCAB run through
:func:`torch.nn.functional.scaled_dot_product_attention` with the relative position bias (and, for
shifted windows, the -100 region mask) as an additive float mask. Only the windows in the last
window-row/column of a shifted map carry a non-zero mask, so those are attended separately and no
``(num_windows, N, N)`` mask is ever built for the whole image.

Without autograd, large maps are attended a few window rows at a time (:data:`CHUNK_PIXELS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .restormer import FeedForward

__all__ = [
    "CHUNK_PIXELS",
    "calculate_rpi_sa",
    "calculate_rpi_oca",
    "calculate_shift_mask",
    "window_partition",
    "window_reverse",
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
# pixels when the map holds more than one group: their qkv / window / output copies (~12 C floats per pixel,
# more for OCAB's overlapping keys) then exist for one group at a time (issue 7's memory goal). Windows are
# attended independently, so the result is the whole-map one.
CHUNK_PIXELS = 32768


def _chunk_rows(h: int, w: int, window_size: int) -> int | None:
    """Image rows per chunk (a multiple of the window size) if chunking applies, else None."""
    if torch.is_grad_enabled():
        return None  # training keeps the whole-map path
    rows = max(1, CHUNK_PIXELS // (window_size * w)) * window_size
    return rows if rows < h else None


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


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def _region_labels(length: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Swin region label (0, 1, 2) of each row (or column) of a cyclically shifted map."""
    lab = torch.zeros(length)
    lab[length - window_size : length - shift_size] = 1
    lab[length - shift_size :] = 2
    return lab


def calculate_shift_mask(h: int, w: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Full SW-MSA mask ``(nW, ws*ws, ws*ws)`` with 0 / -100 entries, as HAT's ``calculate_mask``.

    Used by tests and references; the model itself only builds the boundary-window patterns.
    """
    img = _region_labels(h, window_size, shift_size)[:, None] * 3 + _region_labels(w, window_size, shift_size)
    win = window_partition(img[None, :, :, None], window_size).view(-1, window_size * window_size)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill_(diff != 0, MASK_VALUE)


def _boundary_masks(window_size: int, shift_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three non-zero mask patterns ``(N, N)`` of a shifted map.

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


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (W-MSA / SW-MSA).

    Holds only the parameters (``relative_position_bias_table``, ``qkv``, ``proj``); the window
    partition is done by :class:`HAB` so that shifted maps can route boundary windows separately.
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

    def forward(self, x: torch.Tensor, rpi: torch.Tensor, shift_size: int = 0) -> torch.Tensor:
        """Attention over non-overlapping windows of an (already cyclically shifted) map.

        Args:
            x: ``(B, H, W, C)`` normalised, shifted features; H and W multiples of the window size.
            rpi: ``(N, N)`` relative position index, N = ws*ws.
            shift_size: 0 for W-MSA; otherwise the shift whose region mask must be applied.
        Returns:
            ``(B, H, W, C)`` projected attention output, still in the shifted frame.
        """
        h = x.shape[1]
        bias = self.position_bias(rpi).to(x.dtype)
        rows = _chunk_rows(h, x.shape[2], self.window_size)
        if rows is None:
            return self._attend(x, bias, shift_size, last_row=True)
        out = x.new_empty(x.shape)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            # Only the chunk holding the map's last window row has the shifted row labels (1, 2).
            out[:, r0:r1] = self._attend(x[:, r0:r1], bias, shift_size, last_row=r1 == h)
        return out

    def _attend(self, x: torch.Tensor, bias: torch.Tensor, shift_size: int, last_row: bool) -> torch.Tensor:
        """:meth:`forward` on whole window rows of the map; ``last_row``: they include the map's last one."""
        b, h, w, c = x.shape
        ws, nh = self.window_size, self.num_heads
        d, n = c // nh, ws * ws
        nwh, nww = h // ws, w // ws
        # (B, nWh, ws, nWw, ws, 3, heads, d): a view, windows are sliced out of it per group below.
        qkv = self.qkv(x).view(b, nwh, ws, nww, ws, 3, nh, d)

        def windows(t: torch.Tensor) -> torch.Tensor:
            # (B, r, ws, c, ws, 3, heads, d) -> (3, B, r, c, heads, N, d): the one copy per group.
            t = t.permute(5, 0, 1, 3, 6, 2, 4, 7)
            return t.reshape(3, b, t.shape[2], t.shape[3], nh, n, d)

        if shift_size == 0:
            q, k, v = windows(qkv).flatten(1, 3)
            del qkv
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])  # 4-D mask: CPU SDPA fast path
            del q, k, v
            out = out.view(b, nwh, nww, nh, ws, ws, d)
        else:
            out = self._shifted(qkv, windows, bias, shift_size, b, nwh, nww, last_row)
            del qkv
        # (B, nWh, nWw, heads, ws, ws, d) -> (B, H, W, C)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, h, w, c)
        return self.proj(out)

    def _shifted(self, qkv, windows, bias, shift_size, b, nwh, nww, last_row) -> torch.Tensor:
        """SW-MSA: interior windows get the bias only; boundary windows get bias + region mask.

        ``last_row`` says whether the map's last window row is among the ``nwh`` rows of ``qkv`` (a chunk
        above it has only the last window column as boundary).
        """
        ws, nh = self.window_size, self.num_heads
        d = qkv.shape[-1]
        row_mask, col_mask, corner_mask = (m.to(qkv) for m in _boundary_masks(ws, shift_size))
        top = nwh - 1 if last_row else nwh  # window rows without row labels
        # Boundary group: the whole last window-row (nWw windows, corner last) if present, then the last
        # column of the other rows. Windows are folded into the head axis so a single (1, nb*heads, N, N)
        # mask broadcasts over the batch.
        groups, masks = [], []
        if last_row:
            groups.append(windows(qkv[:, nwh - 1 :])[:, :, 0])  # (3, B, nWw, heads, N, d)
            masks += [row_mask] * (nww - 1) + [corner_mask]
        if top:
            groups.append(windows(qkv[:, :top, :, nww - 1 :])[:, :, :, 0])  # (3, B, top, heads, N, d)
            masks += [col_mask] * top
        mask = torch.stack(masks)[:, None] + bias[None]  # (nb, heads, N, N)
        q, k, v = (torch.cat(groups, dim=2) if len(groups) > 1 else groups[0]).flatten(2, 3)
        del groups
        out_b = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.flatten(0, 1)[None])
        del q, k, v
        out_b = out_b.view(b, len(masks), nh, ws, ws, d)
        out_row, out_col = (out_b[:, :nww], out_b[:, nww:]) if last_row else (None, out_b)
        if top == 0:
            return out_row[:, None]
        if nww > 1:
            q, k, v = windows(qkv[:, :top, :, : nww - 1]).flatten(1, 3)
            out_i = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])  # 4-D mask: CPU SDPA fast path
            del q, k, v
            out_i = out_i.view(b, top, nww - 1, nh, ws, ws, d)
            out_top = torch.cat([out_i, out_col[:, :, None]], dim=2)
        else:
            out_top = out_col[:, :, None]  # a single window column
        return torch.cat([out_top, out_row[:, None]], dim=1) if last_row else out_top


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

    def _branches(self, x: torch.Tensor, rpi_sa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention, conv) branch outputs; their intermediates are freed on return."""
        s = self.shift_size
        xn = self.norm1(x)
        # Conv branch on the normed map; NCHW views of channels-last memory avoid copies.
        conv_x = self.conv_block(xn.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        shifted = torch.roll(xn, shifts=(-s, -s), dims=(1, 2)) if s > 0 else xn
        del xn
        attn_x = self.attn(shifted, rpi_sa, shift_size=s)
        del shifted
        if s > 0:
            attn_x = torch.roll(attn_x, shifts=(s, s), dims=(1, 2))
        return attn_x, conv_x

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor) -> torch.Tensor:
        """x: ``(B, H, W, C)`` channels-last features."""
        attn_x, conv_x = self._branches(x, rpi_sa)
        x = x + attn_x + conv_x * self.conv_scale
        del attn_x, conv_x  # not alive during the feed-forward (the peak of the block)
        return x + self.ffn(self.norm2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


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
        x = self._attend(x, rpi_oca) + x  # the attention's intermediates are freed first
        return x + self.ffn(self.norm2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _attend(self, x: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        """Projected overlapping cross-attention of the normed map, ``(B, H, W, C)``."""
        h = x.shape[1]
        bias = self.position_bias(rpi_oca).to(x.dtype)
        rows = _chunk_rows(h, x.shape[2], self.window_size)
        if rows is None:
            return self._attend_rows(x, bias, 0, h)
        out = x.new_empty(x.shape)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            out[:, r0:r1] = self._attend_rows(x, bias, r0, r1)
        return out

    def _attend_rows(self, x: torch.Tensor, bias: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """:meth:`_attend` for the query rows ``r0:r1`` (whole window rows), ``(B, r1 - r0, W, C)``.

        Keys and values come from those rows plus a halo of ``(wse - ws) / 2`` rows each side; beyond the
        image they are zeros, as HAT's zero-padded unfold gives.
        """
        b, h, w, c = x.shape
        ws, wse, nh = self.window_size, self.overlap_win_size, self.num_heads
        d, nwh, nww = c // nh, (r1 - r0) // ws, w // ws
        pad = (wse - ws) // 2
        lo, hi = max(r0 - pad, 0), min(r1 + pad, h)
        qkv = self.qkv(self.norm1(x[:, lo:hi])).view(b, hi - lo, w, 3, c)

        q = qkv[:, r0 - lo : r1 - lo, :, 0, :].reshape(b, nwh, ws, nww, ws, nh, d)
        q = q.permute(0, 1, 3, 5, 2, 4, 6).reshape(b * nwh * nww, nh, ws * ws, d)

        # Zero pad W, and H where the halo leaves the image.
        kv = F.pad(qkv[..., 1:, :], (0, 0, 0, 0, pad, pad, pad - (r0 - lo), pad - (hi - r1)))
        del qkv
        # Overlapping windows as strided views: (B, nWh, nWw, 2, C, wse_h, wse_w).
        kv = kv.unfold(1, wse, ws).unfold(2, wse, ws).unflatten(4, (nh, d))
        # -> (2, B*nW, heads, wse*wse, d), token order row-major in the window as nn.Unfold gives.
        k, v = kv.permute(3, 0, 1, 2, 4, 6, 7, 5).reshape(2, b * nwh * nww, nh, wse * wse, d)
        del kv

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])  # 4-D mask: CPU SDPA fast path
        del q, k, v
        out = out.view(b, nwh, nww, nh, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, r1 - r0, w, c)
        return self.proj(out)


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
        y = self.residual_group(x.permute(0, 2, 3, 1), rpi_sa, rpi_oca)
        return self.conv(y.permute(0, 3, 1, 2)) + x
