"""PromptIR (all-in-one restoration), re-implemented for cirbench as the JPEG baseline.

Follows the official ``PromptIR(decoder=True)`` (spec section 5): a Restormer U-Net with three
prompt blocks (PromptGenBlock + transformer block + 1x1 reduce) in the decoder. The six modules the
official model builds but never uses (``chnl_reduce{1,2,3}``, ``reduce_noise_channel_{1,2,3}``) are
kept so the state_dict matches ``keys/promptir.txt`` and official checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import conv1x1
from .restormer import Downsample, OverlapPatchEmbed, TransformerBlock, TransformerBlocks, Upsample

__all__ = ["PromptGenBlock", "PromptIR"]


class PromptGenBlock(nn.Module):
    """PromptIR prompt generator: image-level softmax weights over ``prompt_len`` spatial prompts.

    weights = softmax(Linear(GAP(x))); prompt = sum(weights * components), bilinearly resized to
    H x W (align_corners=False), then a 3x3 conv.
    """

    def __init__(self, prompt_dim: int = 128, prompt_len: int = 5, prompt_size: int = 96, lin_dim: int = 192):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, L)
        # Weighted sum over the L components as one contraction: (B, L) x (L, D*S*S).
        comp = self.prompt_param[0]
        prompt = (weights @ comp.flatten(1)).view(-1, *comp.shape[1:])
        prompt = F.interpolate(prompt, (h, w), mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


class PromptIR(nn.Module):
    """PromptIR network (official ``PromptIR(decoder=True)``); input H, W multiples of 8."""

    pad_multiple = 8

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (official kwarg name)
        *,
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        prompt_len: int = 5,
    ):
        super().__init__()
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        p1, p2, p3 = prompt_dims
        ffn = ffn_expansion_factor

        def tbs(width: int, n_heads: int, count: int) -> TransformerBlocks:
            return TransformerBlocks(
                *[TransformerBlock(width, n_heads, ffn, bias, LayerNorm_type) for _ in range(count)]
            )

        self.patch_embed = OverlapPatchEmbed(inp_channels, d1)
        self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], d2)
        self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], d3)
        self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], d4)

        # Dead modules (built but unused by the official forward); widths as in the official code,
        # whose 256 is hard-coded.
        self.chnl_reduce1 = nn.Conv2d(p1, p1, kernel_size=1, bias=bias)
        self.chnl_reduce2 = nn.Conv2d(p2, p2, kernel_size=1, bias=bias)
        self.chnl_reduce3 = nn.Conv2d(p3, 256, kernel_size=1, bias=bias)
        self.reduce_noise_channel_1 = nn.Conv2d(d1 + p1, d1, kernel_size=1, bias=bias)

        self.encoder_level1 = tbs(d1, heads[0], num_blocks[0])
        self.down1_2 = Downsample(d1)
        self.reduce_noise_channel_2 = nn.Conv2d(d2 + p2, d2, kernel_size=1, bias=bias)
        self.encoder_level2 = tbs(d2, heads[1], num_blocks[1])
        self.down2_3 = Downsample(d2)
        self.reduce_noise_channel_3 = nn.Conv2d(d3 + 256, d3, kernel_size=1, bias=bias)
        self.encoder_level3 = tbs(d3, heads[2], num_blocks[2])
        self.down3_4 = Downsample(d3)
        self.latent = tbs(d4, heads[3], num_blocks[3])

        self.up4_3 = Upsample(d3)
        self.reduce_chan_level3 = nn.Conv2d(d2 + d3, d3, kernel_size=1, bias=bias)
        self.noise_level3 = TransformerBlock(d4 + p3, heads[2], ffn, bias, LayerNorm_type)
        self.reduce_noise_level3 = nn.Conv2d(d4 + p3, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = tbs(d3, heads[2], num_blocks[2])

        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.noise_level2 = TransformerBlock(d3 + p2, heads[2], ffn, bias, LayerNorm_type)
        self.reduce_noise_level2 = nn.Conv2d(d3 + p2, d3, kernel_size=1, bias=bias)
        self.decoder_level2 = tbs(d2, heads[1], num_blocks[1])

        self.up2_1 = Upsample(d2)
        self.noise_level1 = TransformerBlock(d2 + p1, heads[2], ffn, bias, LayerNorm_type)
        self.reduce_noise_level1 = nn.Conv2d(d2 + p1, d2, kernel_size=1, bias=bias)
        self.decoder_level1 = tbs(d2, heads[0], num_blocks[0])

        self.refinement = tbs(d2, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` unless H and W are multiples of :attr:`pad_multiple`."""
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(
                f"PromptIR input size {h}x{w} must be a multiple of {self.pad_multiple}; pad the image first"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in and out; the output keeps the input's memory format."""
        self.check_input_size(*x.shape[-2:])
        out_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        # The blocks compute on channels-last data (see restormer.py).
        x = x.contiguous(memory_format=torch.channels_last)
        enc1 = self.encoder_level1(self.patch_embed(x))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        latent = torch.cat([latent, self.prompt3(latent)], 1)
        latent = conv1x1(self.reduce_noise_level3, self.noise_level3(latent))

        dec3 = conv1x1(self.reduce_chan_level3, torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)
        dec3 = torch.cat([dec3, self.prompt2(dec3)], 1)
        dec3 = conv1x1(self.reduce_noise_level2, self.noise_level2(dec3))

        dec2 = conv1x1(self.reduce_chan_level2, torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)
        dec2 = torch.cat([dec2, self.prompt1(dec2)], 1)
        dec2 = conv1x1(self.reduce_noise_level1, self.noise_level1(dec2))

        dec1 = torch.cat([self.up2_1(dec2), enc1], 1)
        dec1 = self.refinement(self.decoder_level1(dec1))
        out = self.output(dec1) + x
        return out.contiguous(memory_format=out_format or torch.contiguous_format)
