"""Literal re-statements of the official HAT/PromptCIR blocks (token layout, full window partition, full
(nW, N, N) mask, explicit softmax, ``nn.Unfold``): the model code is optimised (SDPA, boundary-window
masks, strided unfold), so tests pin its semantics against these."""

from __future__ import annotations

import torch
from reference_promptcir import window_reverse
from torch import nn

from cirbench.archs.hat import HAB, OCAB, RHAG, WindowAttention, window_partition


def loop_rpi_sa(ws: int) -> torch.Tensor:
    out = torch.empty(ws * ws, ws * ws, dtype=torch.long)
    for i in range(ws * ws):
        yi, xi = divmod(i, ws)
        for j in range(ws * ws):
            yj, xj = divmod(j, ws)
            out[i, j] = (yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)
    return out


def loop_rpi_oca(ws: int, wse: int) -> torch.Tensor:
    out = torch.empty(ws * ws, wse * wse, dtype=torch.long)
    side = ws + wse - 1
    for i in range(ws * ws):
        yi, xi = divmod(i, ws)
        for j in range(wse * wse):
            yj, xj = divmod(j, wse)
            out[i, j] = (yj - yi + ws - wse + 1) * side + (xj - xi + ws - wse + 1)
    return out


def loop_mask(h: int, w: int, ws: int, s: int) -> torch.Tensor:
    """HAT's calculate_mask with slices, written out."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    m = win.unsqueeze(1) - win.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def ref_window_attention(attn: WindowAttention, xw: torch.Tensor, rpi, mask) -> torch.Tensor:
    """Official WindowAttention.forward on (nW*B, N, C) windows."""
    b_, n, c = xw.shape
    nh = attn.num_heads
    qkv = attn.qkv(xw).reshape(b_, n, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = (q * (c // nh) ** -0.5) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
    a = a + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        a = a.view(b_ // nw, nw, nh, n, n) + mask.unsqueeze(1).unsqueeze(0)
        a = a.view(-1, nh, n, n)
    a = a.softmax(-1)
    return attn.proj((a @ v).transpose(1, 2).reshape(b_, n, c))


def ref_hab(blk: HAB, x: torch.Tensor, hw, rpi, mask) -> torch.Tensor:
    h, w = hw
    b, _, c = x.shape
    ws, s = blk.window_size, blk.shift_size
    shortcut = x
    x = blk.norm1(x).view(b, h, w, c)
    conv_x = blk.conv_block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
    sx = torch.roll(x, (-s, -s), (1, 2)) if s > 0 else x
    xw = window_partition(sx, ws).view(-1, ws * ws, c)
    aw = ref_window_attention(blk.attn, xw, rpi, mask if s > 0 else None).view(-1, ws, ws, c)
    sx = window_reverse(aw, ws, h, w)
    ax = torch.roll(sx, (s, s), (1, 2)) if s > 0 else sx
    x = shortcut + ax.reshape(b, h * w, c) + conv_x * blk.conv_scale
    y = blk.ffn(blk.norm2(x).view(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
    return x + y


def ref_ocab(blk: OCAB, x: torch.Tensor, hw, rpi) -> torch.Tensor:
    h, w = hw
    b, _, c = x.shape
    ws, wse, nh = blk.window_size, blk.overlap_win_size, blk.num_heads
    d = c // nh
    shortcut = x
    x = blk.norm1(x).view(b, h, w, c)
    qkv = blk.qkv(x).reshape(b, h, w, 3, c).permute(3, 0, 4, 1, 2)
    q = qkv[0].permute(0, 2, 3, 1)
    kv = torch.cat((qkv[1], qkv[2]), dim=1)
    qw = window_partition(q, ws).view(-1, ws * ws, c)
    unfold = nn.Unfold(kernel_size=(wse, wse), stride=ws, padding=(wse - ws) // 2)
    kvw = unfold(kv)  # b, 2*c*wse*wse, nw
    nw = kvw.shape[-1]
    kvw = kvw.view(b, 2, c, wse * wse, nw).permute(1, 0, 4, 3, 2).reshape(2, b * nw, wse * wse, c)
    kw, vw = kvw[0], kvw[1]
    b_ = qw.shape[0]
    qh = qw.reshape(b_, -1, nh, d).permute(0, 2, 1, 3)
    kh = kw.reshape(b_, -1, nh, d).permute(0, 2, 1, 3)
    vh = vw.reshape(b_, -1, nh, d).permute(0, 2, 1, 3)
    a = (qh * d**-0.5) @ kh.transpose(-2, -1)
    bias = blk.relative_position_bias_table[rpi.view(-1)].view(ws * ws, wse * wse, -1).permute(2, 0, 1)
    a = (a + bias.unsqueeze(0)).softmax(-1)
    out = (a @ vh).transpose(1, 2).reshape(b_, ws * ws, c).view(-1, ws, ws, c)
    x = blk.proj(window_reverse(out, ws, h, w).view(b, h * w, c)) + shortcut
    y = blk.ffn(blk.norm2(x).view(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
    return x + y


def ref_rhag(rhag: RHAG, x: torch.Tensor, rpi_sa, rpi_oca) -> torch.Tensor:
    """Official RHAG forward (token layout, full mask recomputed from H, W)."""
    b, c, h, w = x.shape
    ws = rhag.window_size
    mask = loop_mask(h, w, ws, ws // 2)
    t = x.flatten(2).transpose(1, 2)
    for blk in rhag.residual_group.blocks:
        t = ref_hab(blk, t, (h, w), rpi_sa, mask)
    t = ref_ocab(rhag.residual_group.overlap_attn, t, (h, w), rpi_oca)
    return rhag.conv(t.transpose(1, 2).reshape(b, c, h, w)) + x


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------
