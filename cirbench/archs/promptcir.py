"""PromptCIR (NTIRE 2024 blind compressed image enhancement), re-implemented for cirbench.

Structure, names and shapes follow the official ``MyModel(decoder=True)`` so that official
checkpoints load with ``strict=True`` (see spec section 1 and ``keys/promptcir.txt``):

* Restormer U-Net, RHAG (HAT) at levels 1 and 2 of encoder and decoder, Restormer blocks at levels
  3/4 and in the refinement stage, global input residual, no output clamp.
* Three prompt blocks in the decoder, each a dynamic prompt module (DPM, ``prompt{1,2,3}``) and a
  prompt interaction module (PIM: ``noise_level{1,2,3}`` + ``reduce_noise_level{1,2,3}``).

Keyword-only knobs (``prompt_dims``, ``prompt_bases``, ``num_tasks``, ``pim_heads``,
``overlap_ratio``, ``conv_scale``) allow compact variants; their defaults reproduce the official
model, where these values are hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .hat import RHAG, calculate_rpi_oca, calculate_rpi_sa
from .kernels import conv1x1
from .restormer import Downsample, OverlapPatchEmbed, TransformerBlock, TransformerBlocks, Upsample

__all__ = ["Mlp", "ActiveBlock_Prompt_Basis", "PromptCIR", "dpm_prompt_naive", "dpm_prompt"]


class Mlp(nn.Module):
    """Two-layer per-pixel MLP (fc1, GELU, fc2) acting on the last dim."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def dpm_prompt(prompt: torch.Tensor, w_task: torch.Tensor, w_basis: torch.Tensor) -> torch.Tensor:
    """Prompt map ``P[b,e,h,w] = sum_t sum_n w_task[b,t,h,w] w_basis[b,n,h,w] prompt[t,n,e]``.

    Args:
        prompt: ``(T, N, E)`` prompt bases.
        w_task: ``(B, H, W, T)`` per-pixel task weights (channels last).
        w_basis: ``(B, H, W, N)`` per-pixel basis weights (channels last).
    Returns:
        ``(B, H, W, E)``. The per-pixel ``T*N`` outer product is contracted with one matmul, so the
        ``(B, T, N, E, H, W)`` product of the official code is never formed.
    """
    t, n, e = prompt.shape
    b, h, w, _ = w_task.shape
    weights = (w_task.unsqueeze(-1) * w_basis.unsqueeze(-2)).reshape(b, h * w, t * n)
    return torch.matmul(weights, prompt.reshape(t * n, e)).view(b, h, w, e)


def dpm_prompt_naive(prompt: torch.Tensor, w_task: torch.Tensor, w_basis: torch.Tensor) -> torch.Tensor:
    """Reference for tests: the official broadcast product, NCHW in and out.

    Args:
        prompt: ``(1, T, N, E, 1, 1)`` (the official parameter layout).
        w_task: ``(B, T, H, W)``; w_basis: ``(B, N, H, W)``.
    Returns:
        ``(B, E, H, W)``; materialises ``(B, T, N, E, H, W)``.
    """
    prod = w_basis[:, None, :, None] * prompt  # (B, T, N, E, H, W)
    return (w_task[:, :, None] * prod.sum(dim=2)).sum(dim=1)


class ActiveBlock_Prompt_Basis(nn.Module):  # noqa: N801 (official class name kept for reference)
    """Dynamic prompt module (DPM).

    Per pixel, softmax weights over ``num_task`` task groups and ``num_basis`` bases are predicted
    from the features; the prompt map mixes the ``(num_task, num_basis)`` 1x1 prompt bases with them
    and is refined by a 3x3 conv.
    """

    def __init__(self, dim: int, num_task: int = 7, num_basis: int = 8, embed_dim: int = 128):
        super().__init__()
        self.basis_mlp = Mlp(dim, num_basis, num_basis)
        self.task_mlp = Mlp(dim, num_task, num_task)
        self.num_basis = num_basis
        self.num_task = num_task
        self.prompt = nn.Parameter(torch.rand(1, num_task, num_basis, embed_dim, 1, 1))
        self.conv3x3 = nn.Conv2d(embed_dim, embed_dim, kernel_size=3, padding=1, bias=False)

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channels-last softmax weights ``(B,H,W,T)`` and ``(B,H,W,N)`` for an NCHW input."""
        xl = x.permute(0, 2, 3, 1)
        return self.task_mlp(xl).softmax(-1), self.basis_mlp(xl).softmax(-1)

    def forward(self, x: torch.Tensor, naive: bool = False) -> torch.Tensor:
        """``naive=True`` uses :func:`dpm_prompt_naive` (tests only: huge memory)."""
        w_task, w_basis = self.weights(x)
        if naive:
            p = dpm_prompt_naive(self.prompt, w_task.permute(0, 3, 1, 2), w_basis.permute(0, 3, 1, 2))
        else:
            p = dpm_prompt(self.prompt[0, ..., 0, 0], w_task, w_basis).permute(0, 3, 1, 2)
        return self.conv3x3(p)


class PromptCIR(nn.Module):
    """PromptCIR network (official ``MyModel(decoder=True)``).

    Input H and W must be multiples of :attr:`pad_multiple` (32 for the official window size 16):
    every RHAG level (full and half resolution) must tile into windows, and the three 2x
    downsamplings need multiples of 8.
    """

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
        window_size: int = 16,
        compress_ratio: int = 3,
        squeeze_factor: int = 16,
        img_size: int = 128,
        *,
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_bases: Sequence[int] = (64, 32, 16),
        num_tasks: int = 7,
        pim_heads: int | None = None,
        overlap_ratio: float = 0.5,
        conv_scale: float = 0.01,
    ):
        super().__init__()
        self.window_size = window_size
        self.overlap_ratio = overlap_ratio
        self.pad_multiple = math.lcm(2 * window_size, 8)
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        p1, p2, p3 = prompt_dims
        pim_heads = heads[2] if pim_heads is None else pim_heads  # official: heads[2] at all levels
        ffn = ffn_expansion_factor

        def tbs(width: int, n_heads: int, count: int) -> TransformerBlocks:
            return TransformerBlocks(
                *[TransformerBlock(width, n_heads, ffn, bias, LayerNorm_type) for _ in range(count)]
            )

        def rhag(width: int, depth: int, n_heads: int, res: int) -> RHAG:
            return RHAG(
                width,
                depth,
                n_heads,
                window_size,
                compress_ratio=compress_ratio,
                squeeze_factor=squeeze_factor,
                conv_scale=conv_scale,
                overlap_ratio=overlap_ratio,
                ffn_expansion_factor=2.66,  # the official RHAG/OCAB always use the 2.66 default
                input_resolution=res,
            )

        self.patch_embed_input = OverlapPatchEmbed(inp_channels, d1)
        # Registered on the model (as officially) so that they sit in the state_dict.
        self.register_buffer("relative_position_index_SA", calculate_rpi_sa(window_size))
        self.register_buffer("relative_position_index_OCA", calculate_rpi_oca(window_size, overlap_ratio))

        self.prompt1 = ActiveBlock_Prompt_Basis(d2, num_tasks, prompt_bases[0], p1)
        self.prompt2 = ActiveBlock_Prompt_Basis(d3, num_tasks, prompt_bases[1], p2)
        self.prompt3 = ActiveBlock_Prompt_Basis(d4, num_tasks, prompt_bases[2], p3)

        self.encoder_level1 = rhag(d1, num_blocks[0], heads[0], img_size)
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = rhag(d2, num_blocks[1], heads[1], img_size // 2)
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = tbs(d3, heads[2], num_blocks[2])
        self.down3_4 = Downsample(d3)
        self.latent = tbs(d4, heads[3], num_blocks[3])

        self.up4_3 = Upsample(d3)  # reduced to d3 by the PIM first, so outputs d2 channels
        self.reduce_chan_level3 = nn.Conv2d(d2 + d3, d3, kernel_size=1, bias=bias)
        self.noise_level3 = TransformerBlock(d4 + p3, pim_heads, ffn, bias, LayerNorm_type)
        self.reduce_noise_level3 = nn.Conv2d(d4 + p3, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = tbs(d3, heads[2], num_blocks[2])

        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.noise_level2 = TransformerBlock(d3 + p2, pim_heads, ffn, bias, LayerNorm_type)
        self.reduce_noise_level2 = nn.Conv2d(d3 + p2, d3, kernel_size=1, bias=bias)
        self.decoder_level2 = rhag(d2, num_blocks[1], heads[1], img_size // 2)

        self.up2_1 = Upsample(d2)  # no 1x1 reduce after the skip concat: level 1 decodes at d2
        self.noise_level1 = TransformerBlock(d2 + p1, pim_heads, ffn, bias, LayerNorm_type)
        self.reduce_noise_level1 = nn.Conv2d(d2 + p1, d2, kernel_size=1, bias=bias)
        self.decoder_level1 = rhag(d2, num_blocks[0], heads[0], img_size)

        self.refinement = tbs(d2, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Official init: Linear trunc-normal(.02) / zero bias, nn.LayerNorm 1 / 0; convs keep the
        # PyTorch default; prompts U[0,1) and bias tables trunc-normal(.02) are set in the modules.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` unless H and W are multiples of :attr:`pad_multiple`."""
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(
                f"PromptCIR input size {h}x{w} must be a multiple of {self.pad_multiple} "
                f"(window_size {self.window_size}); pad the image first"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in and out; the output keeps the input's memory format."""
        self.check_input_size(*x.shape[-2:])
        rpi = (self.relative_position_index_SA, self.relative_position_index_OCA)
        out_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        # The blocks compute on channels-last data; every conv keeps that layout from here on.
        x = x.contiguous(memory_format=torch.channels_last)

        enc1 = self.encoder_level1(self.patch_embed_input(x), *rpi)
        enc2 = self.encoder_level2(self.down1_2(enc1), *rpi)
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        latent = torch.cat([latent, self.prompt3(latent)], 1)
        latent = conv1x1(self.reduce_noise_level3, self.noise_level3(latent))

        dec3 = conv1x1(self.reduce_chan_level3, torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)
        dec3 = torch.cat([dec3, self.prompt2(dec3)], 1)
        dec3 = conv1x1(self.reduce_noise_level2, self.noise_level2(dec3))

        dec2 = conv1x1(self.reduce_chan_level2, torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2, *rpi)
        dec2 = torch.cat([dec2, self.prompt1(dec2)], 1)
        dec2 = conv1x1(self.reduce_noise_level1, self.noise_level1(dec2))

        dec1 = torch.cat([self.up2_1(dec2), enc1], 1)
        del enc1, enc2, enc3, dec2, dec3, latent  # not alive during the full-resolution decoder
        dec1 = self.refinement(self.decoder_level1(dec1, *rpi))
        out = self.output(dec1) + x
        return out.contiguous(memory_format=out_format or torch.contiguous_format)
