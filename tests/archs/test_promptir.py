"""PromptIR: official state_dict layout, parameter count, reduced-config forward, input checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import official_keys

from cirbench.archs.promptir import PromptGenBlock, PromptIR

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
DEAD = (
    "chnl_reduce1",
    "chnl_reduce2",
    "chnl_reduce3",
    "reduce_noise_channel_1",
    "reduce_noise_channel_2",
    "reduce_noise_channel_3",
)


def test_state_dict_and_counts():
    model = PromptIR()
    ref = official_keys("promptir.txt")
    sd = model.state_dict()
    assert len(ref) == 548
    assert set(sd) == {k for k, _ in ref}
    assert {k: tuple(v.shape) for k, v in sd.items()} == dict(ref)
    assert list(sd) == [k for k, _ in ref]
    assert sum(p.numel() for p in model.parameters()) == 35_592_263
    dead = sum(p.numel() for n in DEAD for p in getattr(model, n).parameters())
    assert dead == 215_296
    assert model.pad_multiple == 8


def test_reduced_forward_and_names():
    torch.manual_seed(0)
    model = PromptIR(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    pattern = re.compile(r"(?:encoder_level\d|latent|decoder_level\d|refinement)\.(\d+)\.")
    keys = [k for k, _ in official_keys("promptir.txt")]
    expected = {k for k in keys if (m := pattern.search(k)) is None or m.group(1) == "0"}
    assert set(model.state_dict()) == expected
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.rand(1, 3, 20, 24))


def test_prompt_gen_block_matches_official_formula():
    torch.manual_seed(0)
    blk = PromptGenBlock(prompt_dim=4, prompt_len=5, prompt_size=6, lin_dim=8)
    x = torch.randn(2, 8, 10, 12)
    w = F.softmax(blk.linear_layer(x.mean(dim=(-2, -1))), dim=1)
    p = (w[:, :, None, None, None] * blk.prompt_param.repeat(2, 1, 1, 1, 1)).sum(1)
    ref = blk.conv3x3(F.interpolate(p, (10, 12), mode="bilinear"))
    torch.testing.assert_close(blk(x), ref, atol=1e-5, rtol=1e-5)
