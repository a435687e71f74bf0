"""PromptCIR: official state_dict layout, reduced configs, DPM and whole-model reference checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import official_keys
from torch import nn

from cirbench.archs.promptcir import ActiveBlock_Prompt_Basis, PromptCIR, dpm_prompt_naive

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
REDUCED = dict(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, window_size=8)

PER_MODULE = {
    "patch_embed_input": 1_296,
    "encoder_level1": 236_707,
    "down1_2": 10_368,
    "encoder_level2": 1_255_128,
    "down2_3": 41_472,
    "encoder_level3": 2_738_112,
    "down3_4": 165_888,
    "latent": 14_370_448,
    "prompt3": 966_623,
    "up4_3": 663_552,
    "reduce_chan_level3": 55_296,
    "prompt2": 184_767,
    "decoder_level1": 899_007,
    "output": 2_592,
    "noise_level3": 5_991_652,
    "reduce_noise_level3": 135_168,
    "decoder_level3": 2_738_112,
    "up3_2": 663_552,
    "reduce_chan_level2": 18_432,
    "noise_level2": 1_251_802,
    "reduce_noise_level2": 61_440,
    "decoder_level2": 1_255_128,
    "prompt1": 76_639,
    "up2_1": 165_888,
    "noise_level1": 319_014,
    "reduce_noise_level1": 15_360,
    "refinement": 471_484,
}


@pytest.fixture(scope="module")
def full_model() -> PromptCIR:
    torch.manual_seed(0)
    return PromptCIR()


def test_state_dict_matches_official(full_model):
    ref = official_keys("promptcir.txt")
    sd = full_model.state_dict()
    assert len(ref) == 870
    assert set(sd) == {k for k, _ in ref}
    assert {k: tuple(v.shape) for k, v in sd.items()} == dict(ref)
    assert list(sd) == [k for k, _ in ref]  # official order too
    assert sd["relative_position_index_SA"].dtype == torch.int64


def test_parameter_counts(full_model):
    assert sum(p.numel() for p in full_model.parameters()) == 34_754_927
    assert sum(PER_MODULE.values()) == 34_754_927
    for name, count in PER_MODULE.items():
        got = sum(p.numel() for p in getattr(full_model, name).parameters())
        assert got == count, name
    assert full_model.pad_multiple == 32


def test_initialisation(full_model):
    for m in full_model.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0
    prompt = full_model.prompt1.prompt
    assert prompt.min() >= 0 and prompt.max() < 1
    w = full_model.encoder_level1.residual_group.blocks[0].attn.qkv.weight
    # trunc-normal(std .02) with timm's absolute cut-offs at +-2, i.e. practically a plain normal
    assert 0.015 < w.std() < 0.025 and w.abs().max() < 2


def _restrict_to_first_block(name: str) -> bool:
    """Whether an official key survives num_blocks=[1,1,1,1], num_refinement_blocks=1."""
    m = re.search(r"(?:blocks|encoder_level3|latent|decoder_level3|refinement)\.(\d+)\.", name)
    return m is None or m.group(1) == "0"


def test_reduced_config_names_and_forward():
    torch.manual_seed(0)
    model = PromptCIR(**REDUCED)
    expected = {k for k, _ in official_keys("promptcir.txt") if _restrict_to_first_block(k)}
    assert set(model.state_dict()) == expected
    assert model.pad_multiple == 16
    assert model.relative_position_index_SA.shape == (64, 64)
    assert model.relative_position_index_OCA.shape == (64, 144)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_bad_input_size_raises():
    model = PromptCIR(**REDUCED)
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 3, 40, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 3, 32, 24))


def test_dpm_efficient_matches_naive():
    torch.manual_seed(0)
    dpm = ActiveBlock_Prompt_Basis(12, num_task=7, num_basis=5, embed_dim=6)
    with torch.no_grad():
        for m in (dpm.basis_mlp, dpm.task_mlp):
            m.fc1.weight.normal_()
            m.fc2.weight.normal_()
    x = torch.randn(2, 12, 9, 11)
    torch.testing.assert_close(dpm(x), dpm(x, naive=True), atol=1e-5, rtol=1e-5)

    w_task, w_basis = dpm.weights(x)
    naive = dpm_prompt_naive(dpm.prompt, w_task.permute(0, 3, 1, 2), w_basis.permute(0, 3, 1, 2))
    einsum = torch.einsum(
        "bthw,bnhw,tne->behw",
        w_task.permute(0, 3, 1, 2),
        w_basis.permute(0, 3, 1, 2),
        dpm.prompt[0, ..., 0, 0],
    )
    torch.testing.assert_close(naive, einsum, atol=1e-5, rtol=1e-5)


def test_whole_model_matches_official_formulation():
    """Reduced model vs the official data flow with literal RHAG and naive DPM references."""
    from reference_hat import ref_rhag

    torch.manual_seed(0)
    m = PromptCIR(**REDUCED, squeeze_factor=4)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2 and p.shape[1] <= 4:  # bias tables: make them matter
                p.normal_(0, 0.5)
    x = torch.rand(1, 3, 32, 32)
    sa, oca = m.relative_position_index_SA, m.relative_position_index_OCA

    def rhag(mod, t):
        return ref_rhag(mod, t, sa, oca)

    with torch.no_grad():
        enc1 = rhag(m.encoder_level1, m.patch_embed_input(x))
        enc2 = rhag(m.encoder_level2, m.down1_2(enc1))
        enc3 = m.encoder_level3(m.down2_3(enc2))
        lat = m.latent(m.down3_4(enc3))
        lat = m.reduce_noise_level3(m.noise_level3(torch.cat([lat, m.prompt3(lat, naive=True)], 1)))
        d3 = m.decoder_level3(m.reduce_chan_level3(torch.cat([m.up4_3(lat), enc3], 1)))
        d3 = m.reduce_noise_level2(m.noise_level2(torch.cat([d3, m.prompt2(d3, naive=True)], 1)))
        d2 = rhag(m.decoder_level2, m.reduce_chan_level2(torch.cat([m.up3_2(d3), enc2], 1)))
        d2 = m.reduce_noise_level1(m.noise_level1(torch.cat([d2, m.prompt1(d2, naive=True)], 1)))
        d1 = m.refinement(rhag(m.decoder_level1, torch.cat([m.up2_1(d2), enc1], 1)))
        ref = m.output(d1) + x
        got = m(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_compact_variant_knobs_and_backward():
    torch.manual_seed(0)
    m = PromptCIR(
        dim=16,
        num_blocks=[1, 2, 2, 2],
        num_refinement_blocks=1,
        window_size=8,
        prompt_dims=(16, 32, 64),
        prompt_bases=(16, 8, 4),
        num_tasks=7,
        pim_heads=2,
    )
    assert m.prompt3.prompt.shape == (1, 7, 4, 64, 1, 1)
    assert m.noise_level3.attn.temperature.shape == (2, 1, 1)
    assert m.reduce_noise_level3.weight.shape == (64, 128 + 64, 1, 1)
    x = torch.rand(2, 3, 32, 48)
    y = m(x)
    y.abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
