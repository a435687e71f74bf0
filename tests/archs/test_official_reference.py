"""cirbench's PromptCIR vs the naive official-style reference of the benchmarks (issue 7, goal 1).

The reference (``tests/reference_promptcir.py``) computes the way the official code does: explicit
window attention with a whole-image shift mask, ``nn.Unfold`` for OCAB, the materialised DPM product. Both
load the same state_dict; their outputs must agree to 1e-4.
"""

from __future__ import annotations

import pytest
import torch
from reference_promptcir import NaivePromptCIR

from cirbench.archs import PromptCIR

torch.set_num_threads(1)

REDUCED = dict(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)


def _randomised(model: PromptCIR) -> PromptCIR:
    """Shared random weights with every branch mattering: non-trivial bias tables and norms."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
            elif name.endswith("temperature") or (p.ndim == 1 and "norm" in name):
                p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize(
    "kwargs",
    [dict(window_size=8, num_blocks=[2, 2, 1, 1]), dict(window_size=16), dict(window_size=8, squeeze_factor=4)],
    ids=["ws8-two-habs", "ws16", "ws8-sq4"],
)
def test_matches_naive_official_forward(kwargs):
    torch.manual_seed(0)
    cfg = {**REDUCED, **kwargs}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    assert set(ref.state_dict()) == set(ours.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        got, want = ours(x), ref(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_non_square_and_batch():
    torch.manual_seed(1)
    cfg = {**REDUCED, "window_size": 8}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 80)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)


def test_same_keys_as_full_official_config():
    ours, ref = PromptCIR(), NaivePromptCIR()
    so, sr = ours.state_dict(), ref.state_dict()
    assert set(so) == set(sr)
    assert {k: v.shape for k, v in so.items()} == {k: v.shape for k, v in sr.items()}
    assert torch.equal(so["relative_position_index_OCA"], sr["relative_position_index_OCA"])
    assert torch.equal(so["relative_position_index_SA"], sr["relative_position_index_SA"])


@pytest.mark.parametrize("ln_type", ["WithBias", "BiasFree"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 12, 37, 20), (2, 12, 11, 9)])
@pytest.mark.parametrize("rows", [1, 2, 4, 100])  # rows per band: 1 makes each band's carried halo overlap
def test_banded_transformer_blocks_match_autograd_path(monkeypatch, shape, rows, bias, ln_type):
    """Without autograd, Restormer blocks stream the map in row bands and update it in place (MDTA from
    banded Gram matrices, GDFN with carried halo rows); same values as the autograd path, input untouched."""
    from cirbench.archs import kernels, restormer

    torch.manual_seed(0)
    blocks = restormer.TransformerBlocks(*[restormer.TransformerBlock(12, 2, 2.66, bias, ln_type) for _ in range(3)])
    with torch.no_grad():
        for name, p in blocks.named_parameters():
            if name.endswith("temperature") or "norm" in name:
                p.uniform_(0.5, 1.5)
            elif p.ndim == 1:
                p.normal_(0, 0.5)  # biases matter, and padding must stay zero around them
    x = torch.randn(*shape)
    want_blocks, want_one = blocks(x), blocks[0](x)  # autograd on: the whole-map path
    monkeypatch.setattr(kernels, "BAND_PIXELS", rows * shape[-1])
    before = x.clone()
    with torch.no_grad():
        assert kernels.band_rows(shape[-1]) == rows
        got_blocks, got_one = blocks(x), blocks[0](x)
    torch.testing.assert_close(got_blocks, want_blocks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_one, want_one, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, before)
    assert got_blocks.is_contiguous(memory_format=torch.channels_last)


def test_banded_model_matches_naive(monkeypatch):
    from cirbench.archs import kernels

    torch.manual_seed(2)
    cfg = {**REDUCED, "window_size": 8}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 48)
    monkeypatch.setattr(kernels, "BAND_PIXELS", 200)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)


def test_chunked_model_matches_naive(monkeypatch):
    """Window-row chunks of HAB/OCAB attention (and GDFN/MDTA bands) at inference keep the official output."""
    from cirbench.archs import hat, kernels

    torch.manual_seed(3)
    cfg = {**REDUCED, "window_size": 8, "num_blocks": [2, 2, 1, 1]}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 80, 48)
    monkeypatch.setattr(hat, "CHUNK_PIXELS", 8 * 48)  # one window row per chunk at full resolution
    monkeypatch.setattr(kernels, "BAND_PIXELS", 200)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)


def test_inference_path_under_bf16_autocast():
    """The in-place inference path keeps working under autocast (GPU bf16, CPUs with native bf16): same
    output as the autograd path under autocast, to bf16 rounding."""
    torch.manual_seed(4)
    cfg = {**REDUCED, "window_size": 8}
    ours = _randomised(PromptCIR(**cfg))
    x = torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = ours(x)  # autograd on: the whole-map path
        with torch.inference_mode():
            got = ours(x)
    torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=0)
