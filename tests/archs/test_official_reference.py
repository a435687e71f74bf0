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


@pytest.mark.parametrize("shape", [(1, 12, 37, 20), (2, 12, 64, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_banded_stems_match_whole_map(monkeypatch, shape, channels_last):
    """GDFN and MDTA run in row bands without autograd on large maps; same values and layout as whole."""
    from cirbench.archs import restormer

    torch.manual_seed(0)
    ffn, mdta = restormer.FeedForward(12, 2.66, bias=True), restormer.Attention(12, 2, bias=True)
    x = torch.randn(*shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        whole = ffn(x), mdta(x)
        monkeypatch.setattr(restormer, "BAND_PIXELS", 40)  # bands of 1-4 rows
        assert restormer._use_bands(x)
        banded = ffn(x), mdta(x)
    for a, b in zip(whole, banded, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert banded[0].is_contiguous(memory_format=torch.channels_last) == whole[0].is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.enable_grad():
        assert not restormer._use_bands(x)  # training keeps the whole-map path


def test_banded_model_matches_naive(monkeypatch):
    from cirbench.archs import restormer

    torch.manual_seed(2)
    cfg = {**REDUCED, "window_size": 8}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 48)
    monkeypatch.setattr(restormer, "BAND_PIXELS", 200)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)


def test_chunked_model_matches_naive(monkeypatch):
    """Window-row chunks of HAB/OCAB attention (and GDFN/MDTA bands) at inference keep the official output."""
    from cirbench.archs import hat, restormer

    torch.manual_seed(3)
    cfg = {**REDUCED, "window_size": 8, "num_blocks": [2, 2, 1, 1]}
    ours = _randomised(PromptCIR(**cfg))
    ref = NaivePromptCIR(**cfg).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 80, 48)
    monkeypatch.setattr(hat, "CHUNK_PIXELS", 8 * 48)  # one window row per chunk at full resolution
    monkeypatch.setattr(restormer, "BAND_PIXELS", 200)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)
