"""FBCNN: state_dict layout vs the official key lists, parameter counts, and forward semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import official_keys

from cirbench.archs.fbcnn import FBCNN

torch.set_num_threads(1)

SMALL = dict(nc=[8, 16, 32, 64], nb=1)


def _meta_model(**kwargs) -> FBCNN:
    # Meta tensors: full-size shapes without allocating/initialising 72M parameters.
    with torch.device("meta"):
        return FBCNN(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "key_file", "n_params"),
    [({}, "fbcnn_color.txt", 71_921_796), ({"in_nc": 1, "out_nc": 1}, "fbcnn_gray.txt", 71_919_490)],
)
def test_state_dict_matches_official(kwargs, key_file, n_params):
    model = _meta_model(**kwargs)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(v)) for k, v in official_keys(key_file)]  # names, shapes and order
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_param_counts_without_spec():
    # Independent of the spec files, so the counts are checked even where they are absent.
    assert sum(p.numel() for p in _meta_model().parameters()) == 71_921_796
    assert sum(p.numel() for p in _meta_model(in_nc=1, out_nc=1).parameters()) == 71_919_490


@pytest.fixture(scope="module")
def small_model() -> FBCNN:
    torch.manual_seed(0)
    return FBCNN(**SMALL).eval()


def test_forward_shapes(small_model):
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        out, qf = small_model(x)
    assert out.shape == x.shape
    assert qf.shape == (1, 1)
    assert 0.0 <= qf.item() <= 1.0
    assert small_model.pad_multiple == 8


def test_gray_forward():
    torch.manual_seed(0)
    model = FBCNN(in_nc=1, out_nc=1, **SMALL).eval()
    with torch.no_grad():
        out, qf = model(torch.rand(2, 1, 16, 24))
    assert out.shape == (2, 1, 16, 24) and qf.shape == (2, 1)


def test_padding_is_replicate_bottom_right_and_cropped(small_model):
    x = torch.rand(1, 3, 37, 29)
    padded = F.pad(x, (0, 3, 0, 3), mode="replicate")  # 40 x 32: already a multiple of 8
    with torch.no_grad():
        out, qf = small_model(x)
        ref, ref_qf = small_model(padded)
    assert ref.shape[-2:] == (40, 32)
    torch.testing.assert_close(out, ref[..., :37, :29])
    torch.testing.assert_close(qf, ref_qf)


def test_qf_input_overrides_prediction(small_model):
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        out, qf = small_model(x)
        same, qf_same = small_model(x, qf_input=qf.clone())
        low, qf_low = small_model(x, qf_input=torch.tensor([[0.9]]))
        high, _ = small_model(x, qf_input=torch.tensor([[0.1]]))
    # Feeding the predicted value back reproduces the blind output exactly.
    torch.testing.assert_close(same, out)
    # The returned q-hat is always the prediction, whatever qf_input says.
    torch.testing.assert_close(qf_low, qf)
    torch.testing.assert_close(qf_same, qf)
    assert not torch.allclose(low, high)
    assert low.shape == x.shape


def test_no_global_residual():
    # With every weight zero the output is the tail bias only, not the input.
    model = FBCNN(**SMALL).eval()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        out, qf = model(torch.rand(1, 3, 8, 8))
    assert torch.count_nonzero(out) == 0
    torch.testing.assert_close(qf, torch.full((1, 1), 0.5))
