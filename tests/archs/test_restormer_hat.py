"""Restormer / HAT building blocks against straightforward re-statements of the official code.

The ``ref_*`` helpers follow the official PromptCIR/HAT formulation literally (token layout, full
window partition, full (nW, N, N) mask, explicit softmax, ``nn.Unfold``); the model code is
optimised (SDPA, boundary-window masks, strided unfold), so these pin its semantics.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reference_hat import loop_mask, loop_rpi_oca, loop_rpi_sa, ref_ocab, ref_rhag, ref_window_attention
from reference_promptcir import window_reverse

from cirbench.archs.hat import (
    CAB,
    HAB,
    OCAB,
    RHAG,
    WindowAttention,
    calculate_rpi_oca,
    calculate_rpi_sa,
    window_order,
    window_partition,
)
from cirbench.archs.kernels import padded_width
from cirbench.archs.restormer import Attention, LayerNorm, TransformerBlock

torch.set_num_threads(1)


@pytest.mark.parametrize("ws", [4, 8, 16])
def test_rpi_sa_matches_loop(ws):
    rpi = calculate_rpi_sa(ws)
    assert rpi.dtype == torch.int64 and rpi.shape == (ws * ws, ws * ws)
    assert torch.equal(rpi, loop_rpi_sa(ws))


@pytest.mark.parametrize("ws", [4, 8, 16])
def test_rpi_oca_matches_loop(ws):
    wse = ws + ws // 2
    rpi = calculate_rpi_oca(ws, 0.5)
    assert rpi.dtype == torch.int64 and rpi.shape == (ws * ws, wse * wse)
    assert torch.equal(rpi, loop_rpi_oca(ws, wse))
    # HAT's OCA offsets go negative (they index the table from its end); they stay in range.
    assert rpi.min() < 0
    assert -((ws + wse - 1) ** 2) <= rpi.min() and rpi.max() < (ws + wse - 1) ** 2


@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize("hw", [(16, 24), (8, 16), (24, 8), (8, 8)])
def test_window_attention_sdpa_vs_plain(hw, shift):
    torch.manual_seed(0)
    ws, c, heads, b = 8, 12, 3, 2
    attn = WindowAttention(c, ws, heads)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1)  # make the bias matter
    rpi = calculate_rpi_sa(ws)
    x = torch.randn(b, *hw, c)
    got = attn(x, rpi, shift_size=shift)
    mask = loop_mask(*hw, ws, shift) if shift else None
    xw = window_partition(x, ws).view(-1, ws * ws, c)
    ref = window_reverse(ref_window_attention(attn, xw, rpi, mask).view(-1, ws, ws, c), ws, *hw)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hw", [(16, 24), (8, 8)])
def test_ocab_vs_unfold_reference(hw):
    torch.manual_seed(1)
    ws, c, heads = 8, 12, 2
    blk = OCAB(c, ws, 0.5, heads)
    with torch.no_grad():
        blk.relative_position_bias_table.normal_(0, 1)
        blk.qkv.bias.normal_(0, 1)  # padded k/v must be zeros, not qkv.bias
    x = torch.randn(2, *hw, c)
    rpi = calculate_rpi_oca(ws, 0.5)
    got = blk(x, rpi)
    ref = ref_ocab(blk, x.reshape(2, -1, c), hw, rpi).view_as(got)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_rhag_vs_reference_and_backward():
    torch.manual_seed(2)
    ws = 8
    rhag = RHAG(12, depth=2, num_heads=2, window_size=ws, compress_ratio=3, squeeze_factor=4)
    x = torch.randn(1, 12, 16, 24, requires_grad=True)
    sa, oca = calculate_rpi_sa(ws), calculate_rpi_oca(ws, 0.5)
    got = rhag(x, sa, oca)
    torch.testing.assert_close(got, ref_rhag(rhag, x, sa, oca), atol=1e-5, rtol=1e-5)
    got.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in rhag.parameters())


def test_rhag_rejects_non_window_multiple():
    rhag = RHAG(8, depth=1, num_heads=1, window_size=8, squeeze_factor=4)
    with pytest.raises(ValueError, match="multiple of window_size 8"):
        rhag(torch.randn(1, 8, 12, 16), calculate_rpi_sa(8), calculate_rpi_oca(8))


@pytest.mark.parametrize("ln_type", ["WithBias", "BiasFree"])
def test_layernorm_matches_official_formula(ln_type):
    torch.manual_seed(3)
    ln = LayerNorm(6, ln_type)
    with torch.no_grad():
        for p in ln.parameters():
            p.normal_()
    x = torch.randn(2, 6, 5, 7)
    t = x.flatten(2).transpose(1, 2)  # b (h w) c
    var = t.var(-1, keepdim=True, unbiased=False)
    if ln_type == "BiasFree":
        ref = t / torch.sqrt(var + 1e-5) * ln.body.weight
    else:
        ref = (t - t.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) * ln.body.weight + ln.body.bias
    torch.testing.assert_close(ln(x), ref.transpose(1, 2).reshape_as(x), atol=1e-5, rtol=1e-5)


def test_mdta_matches_official_formula():
    torch.manual_seed(4)
    att = Attention(8, 2, bias=False)
    with torch.no_grad():
        att.temperature.uniform_(0.5, 2)
    x = torch.randn(2, 8, 6, 5)
    qkv = att.qkv_dwconv(att.qkv(x))
    q, k, v = (t.reshape(2, 2, 4, 30) for t in qkv.chunk(3, dim=1))
    a = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * att.temperature
    ref = att.project_out((a.softmax(-1) @ v).reshape(2, 8, 6, 5))
    torch.testing.assert_close(att(x), ref, atol=1e-5, rtol=1e-5)


def test_transformer_block_keys():
    names = set(TransformerBlock(16, 2, 2.66, False, "WithBias").state_dict())
    assert names == {
        "norm1.body.weight",
        "norm1.body.bias",
        "attn.temperature",
        "attn.qkv.weight",
        "attn.qkv_dwconv.weight",
        "attn.project_out.weight",
        "norm2.body.weight",
        "norm2.body.bias",
        "ffn.project_in.weight",
        "ffn.dwconv.weight",
        "ffn.project_out.weight",
    }


# ------------------------------------------------------------------------------------------------
# Inference chunking over window rows (hat.CHUNK_PIXELS)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("win_rows", [1, 2])  # window rows per chunk (2: the last chunk may hold one)
@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize("hw", [(40, 16), (24, 8), (32, 24)])
def test_chunked_attention_matches_whole_map(monkeypatch, hw, shift, win_rows):
    """HAB window attention and OCAB in window-row chunks (no autograd) equal the whole-map path."""
    from cirbench.archs import hat

    torch.manual_seed(3)
    ws, c, heads = 8, 12, 3
    attn, ocab = WindowAttention(c, ws, heads), OCAB(c, ws, 0.5, heads)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1)
        ocab.relative_position_bias_table.normal_(0, 1)
        ocab.qkv.bias.normal_(0, 1)  # halo rows beyond the image must be zeros, not qkv.bias
    sa, oca = calculate_rpi_sa(ws), calculate_rpi_oca(ws, 0.5)
    x = torch.randn(2, *hw, c)
    whole = attn(x, sa, shift_size=shift), ocab(x, oca)  # autograd on: the unchunked training path
    monkeypatch.setattr(hat, "CHUNK_PIXELS", win_rows * ws * hw[1])
    with torch.no_grad():
        assert hat._chunk_rows(*hw, ws) == win_rows * ws
        chunked = attn(x, sa, shift_size=shift), ocab(x, oca)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    with torch.enable_grad():
        assert hat._chunk_rows(*hw, ws) is None


def test_chunked_rhag_matches_whole_map(monkeypatch):
    from cirbench.archs import hat, kernels

    torch.manual_seed(4)
    ws = 8
    rhag = RHAG(12, depth=2, num_heads=2, window_size=ws, compress_ratio=3, squeeze_factor=4)
    x = torch.randn(1, 12, 48, 24)
    sa, oca = calculate_rpi_sa(ws), calculate_rpi_oca(ws, 0.5)
    with torch.no_grad():
        whole = rhag(x, sa, oca)
        monkeypatch.setattr(hat, "CHUNK_PIXELS", 2 * ws * 24)  # 2 window rows per chunk: 3 chunks
        monkeypatch.setattr(kernels, "BAND_PIXELS", 5 * 24)  # LayerNorm, CAB and GDFN in 5-row bands
        chunked = rhag(x, sa, oca)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, ref_rhag(rhag, x, sa, oca), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Window gathering by pixel index and the in-place inference path
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(16, 24), (8, 8), (24, 8), (8, 32)])
@pytest.mark.parametrize("roll", [0, 4])
def test_window_order_is_roll_then_partition(hw, roll):
    h, w = hw
    ws = 8
    grid = torch.arange(h * w).view(1, h, w, 1)
    want = window_partition(torch.roll(grid, (-roll, -roll), (1, 2)), ws).flatten()
    idx, counts = window_order(h, w, ws, roll, masked=False)
    assert counts == [len(idx) // ws**2] and torch.equal(idx, want)
    # Masked: the same windows, regrouped as interior / last column / last row / corner.
    idx_m, counts_m = window_order(h, w, ws, roll, masked=True)
    nwh, nww = h // ws, w // ws
    assert counts_m == [(nwh - 1) * (nww - 1), nwh - 1, nww - 1, 1]
    assert torch.equal(idx_m.sort().values, torch.arange(h * w))
    # A band of window rows is the matching slice of the windows.
    band, _ = window_order(h, w, ws, roll, False, 1, nwh) if nwh > 1 else (idx, None)
    assert torch.equal(band, idx[len(idx) - len(band) :])


@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize("hw", [(24, 16), (8, 24), (16, 8), (8, 8)])
def test_hab_inference_path_matches_autograd_path(monkeypatch, hw, shift):
    """HAB without autograd (in place, banded LayerNorm / CAB / GDFN, window-row chunks) = the autograd path."""
    from cirbench.archs import hat, kernels

    torch.manual_seed(5)
    blk = HAB(12, 3, 8, shift_size=shift, squeeze_factor=4)
    with torch.no_grad():
        blk.attn.relative_position_bias_table.normal_(0, 1)
        blk.conv_scale = 0.5  # make the CAB branch matter
    x = torch.randn(2, *hw, 12)
    sa = calculate_rpi_sa(8)
    want = blk(x, sa)
    monkeypatch.setattr(hat, "CHUNK_PIXELS", 8 * hw[1])  # one window row per chunk
    monkeypatch.setattr(kernels, "BAND_PIXELS", 3 * hw[1])  # 3-row bands
    before = x.clone()
    with torch.no_grad():
        got = blk(x, sa)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, before)


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_cab_convs_in_bands(monkeypatch, rows):
    from cirbench.archs import kernels

    torch.manual_seed(6)
    cab = CAB(12, 3, 4)
    x = torch.randn(1, 12, 11, 7)
    want = cab(x)
    monkeypatch.setattr(kernels, "BAND_PIXELS", rows * 7)
    out = torch.empty(11, 7, 12)
    with torch.no_grad():
        factors = cab.convs_into(x[0].permute(1, 2, 0).contiguous(), out)
    torch.testing.assert_close((out * factors).permute(2, 0, 1)[None], want, atol=1e-5, rtol=1e-5)


def test_ocab_inference_path_leaves_input():
    torch.manual_seed(7)
    blk = OCAB(12, 8, 0.5, 2)
    x = torch.randn(1, 16, 24, 12)
    before = x.clone()
    with torch.no_grad():
        got = blk(x, calculate_rpi_oca(8, 0.5))
    assert torch.equal(x, before) and not torch.equal(got, x)


def test_padded_width():
    assert [padded_width(n) for n in (8, 127, 255, 510, 1021, 1872)] == [8, 128, 256, 512, 1024, 1872]
