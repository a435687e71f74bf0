"""A naive re-implementation of the OFFICIAL PromptCIR forward: the speed and memory reference of issue 7.

Written from the official ``model.py`` (PromptCIR-NTIRE24, spec section 1), keeping its way of computing,
not its text: HAT-style explicit window attention ``softmax(q*scale @ k^T + bias [+ mask])`` with the
shifted-window mask built for the *whole* image in every RHAG, OCAB keys/values through ``nn.Unfold`` and a
rearranging copy, token-layout ``(B, HW, C)`` blocks with ``.contiguous()`` copies, Restormer layer norms as
mean/var formulas on a rearranged copy, and the dynamic prompt module materialising the
``(B, T, N, E, H, W)`` product. No ``scaled_dot_product_attention``, no einsum.

:class:`NaivePromptCIR` takes the constructor arguments of :class:`cirbench.archs.PromptCIR` and has exactly
its ``state_dict`` keys, so the two load the same weights::

    ours = PromptCIR(**kw); ref = NaivePromptCIR(**kw); ref.load_state_dict(ours.state_dict())

Benchmark/test use only: it is slow and memory hungry on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NaivePromptCIR", "window_partition", "window_reverse", "full_shift_mask"]


# --- Restormer parts, official style -------------------------------------------------------------------
def to_3d(x: torch.Tensor) -> torch.Tensor:
    """b c h w -> b (h w) c, a copy (einops.rearrange in the official code)."""
    return x.flatten(2).transpose(1, 2).contiguous()


def to_4d(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """b (h w) c -> b c h w, a copy."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w).contiguous()


class _BiasFreeLN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(sigma + 1e-5) * self.weight


class _WithBiasLN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    def __init__(self, dim: int, ln_type: str):
        super().__init__()
        self.body = _BiasFreeLN(dim) if ln_type == "BiasFree" else _WithBiasLN(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return to_4d(self.body(to_3d(x)), h, w)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """MDTA with the official head split (a rearranging copy per tensor)."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w).contiguous() for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w).contiguous())


class TransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, ln_type):
        super().__init__()
        self.norm1 = LayerNorm(dim, ln_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, ln_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class _Proj(nn.Module):
    """Holds ``proj`` (OverlapPatchEmbed) or ``body`` (Down/Upsample) under the official key names."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.name = name
        self.add_module(name, module)

    def forward(self, x):
        return getattr(self, self.name)(x)


def _downsample(n_feat: int) -> nn.Module:
    return _Proj("body", nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, 1, 1, bias=False), nn.PixelUnshuffle(2)))


def _upsample(n_feat: int) -> nn.Module:
    return _Proj("body", nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, 1, 1, bias=False), nn.PixelShuffle(2)))


# --- HAT parts (RHAG), official style ------------------------------------------------------------------
def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(b, h, w, c) -> (b*nw, ws, ws, c), a copy."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(b*nw, ws, ws, c) -> (b, h, w, c), a copy."""
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def full_shift_mask(h: int, w: int, ws: int, ss: int) -> torch.Tensor:
    """The SW-MSA mask of the whole image, (nW, ws*ws, ws*ws) with 0 / -100, rebuilt per RHAG forward."""
    img_mask = torch.zeros((1, h, w, 1))
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -ss), slice(-ss, None)):
        for wsl in (slice(0, -ws), slice(-ws, -ss), slice(-ss, None)):
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mw = window_partition(img_mask, ws).view(-1, ws * ws)
    mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class ChannelAttention(nn.Module):
    def __init__(self, num_feat: int, squeeze_factor: int):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, num_feat // squeeze_factor, 1), nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.attention(x)


class CAB(nn.Module):
    def __init__(self, num_feat: int, compress_ratio: int, squeeze_factor: int):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // compress_ratio, 3, 1, 1), nn.GELU(),
            nn.Conv2d(num_feat // compress_ratio, num_feat, 3, 1, 1), ChannelAttention(num_feat, squeeze_factor))

    def forward(self, x):
        return self.cab(x)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, ws: int, num_heads: int):
        super().__init__()
        self.dim, self.ws, self.num_heads = dim, ws, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rpi, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))


class HAB(nn.Module):
    def __init__(self, dim, num_heads, ws, shift, compress_ratio, squeeze_factor, conv_scale, ffn_factor):
        super().__init__()
        self.ws, self.shift, self.conv_scale = ws, shift, conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_factor, bias=True)

    def forward(self, x, x_size, rpi_sa, attn_mask):
        h, w = x_size
        b, _, c = x.shape
        ws, s = self.ws, self.shift
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        conv_x = self.conv_block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous().view(b, h * w, c)
        shifted = torch.roll(x, shifts=(-s, -s), dims=(1, 2)) if s > 0 else x
        windows = window_partition(shifted, ws).view(-1, ws * ws, c)
        attn_windows = self.attn(windows, rpi_sa, mask=attn_mask if s > 0 else None)
        shifted = window_reverse(attn_windows.view(-1, ws, ws, c), ws, h, w)
        attn_x = torch.roll(shifted, shifts=(s, s), dims=(1, 2)) if s > 0 else shifted
        x = shortcut + attn_x.view(b, h * w, c) + conv_x * self.conv_scale
        y = self.ffn(self.norm2(x).view(b, h, w, c).permute(0, 3, 1, 2))
        return x + y.permute(0, 2, 3, 1).contiguous().view(b, h * w, c)


class OCAB(nn.Module):
    def __init__(self, dim, ws, overlap_ratio, num_heads, ffn_factor):
        super().__init__()
        self.dim, self.ws, self.num_heads = dim, ws, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.wse = int(ws * overlap_ratio) + ws
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.unfold = nn.Unfold(kernel_size=(self.wse, self.wse), stride=ws, padding=(self.wse - ws) // 2)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((ws + self.wse - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_factor, bias=True)

    def forward(self, x, x_size, rpi):
        h, w = x_size
        b, _, c = x.shape
        ws, wse, nh = self.ws, self.wse, self.num_heads
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        qkv = self.qkv(x).reshape(b, h, w, 3, c).permute(3, 0, 4, 1, 2)  # 3, b, c, h, w
        q = qkv[0].permute(0, 2, 3, 1)
        kv = torch.cat((qkv[1], qkv[2]), dim=1)  # b, 2c, h, w
        q_windows = window_partition(q, ws).view(-1, ws * ws, c)
        kv_windows = self.unfold(kv)  # b, 2c*wse*wse, nw
        nw = kv_windows.shape[-1]
        # 'b (nc ch owh oww) nw -> nc (b nw) (owh oww) ch'
        kv_windows = kv_windows.view(b, 2, c, wse, wse, nw).permute(1, 0, 5, 3, 4, 2)
        kv_windows = kv_windows.reshape(2, b * nw, wse * wse, c).contiguous()
        k_windows, v_windows = kv_windows[0], kv_windows[1]
        b_, nq, _ = q_windows.shape
        n = k_windows.shape[1]
        d = c // nh
        q = q_windows.reshape(b_, nq, nh, d).permute(0, 2, 1, 3)
        k = k_windows.reshape(b_, n, nh, d).permute(0, 2, 1, 3)
        v = v_windows.reshape(b_, n, nh, d).permute(0, 2, 1, 3)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[rpi.view(-1)].view(nq, n, -1).permute(2, 0, 1).contiguous()
        attn = (attn + bias.unsqueeze(0)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b_, nq, c)
        x = window_reverse(out.view(-1, ws, ws, c), ws, h, w).view(b, h * w, c)
        x = self.proj(x) + shortcut
        y = self.ffn(self.norm2(x).view(b, h, w, c).permute(0, 3, 1, 2))
        return x + y.permute(0, 2, 3, 1).contiguous().view(b, h * w, c)


class AttenBlocks(nn.Module):
    def __init__(self, dim, depth, num_heads, ws, compress_ratio, squeeze_factor, conv_scale, overlap_ratio):
        super().__init__()
        self.blocks = nn.ModuleList(
            HAB(dim, num_heads, ws, 0 if i % 2 == 0 else ws // 2, compress_ratio, squeeze_factor, conv_scale, 2.66)
            for i in range(depth))
        self.overlap_attn = OCAB(dim, ws, overlap_ratio, num_heads, 2.66)

    def forward(self, x, x_size, params):
        for blk in self.blocks:
            x = blk(x, x_size, params["rpi_sa"], params["attn_mask"])
        return self.overlap_attn(x, x_size, params["rpi_oca"])


class RHAG(nn.Module):
    def __init__(self, dim, depth, num_heads, ws, compress_ratio, squeeze_factor, conv_scale, overlap_ratio):
        super().__init__()
        self.ws = ws
        self.residual_group = AttenBlocks(dim, depth, num_heads, ws, compress_ratio, squeeze_factor, conv_scale,
                                          overlap_ratio)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, params):
        h, w = x.shape[2], x.shape[3]
        params["attn_mask"] = full_shift_mask(h, w, self.ws, self.ws // 2).to(x.device)
        tokens = x.flatten(2).transpose(1, 2)  # patch_embed
        y = self.residual_group(tokens, (h, w), params)
        y = y.transpose(1, 2).contiguous().view(x.shape[0], -1, h, w)  # patch_unembed
        return self.conv(y) + x


# --- prompt module (DPM), official broadcast product -----------------------------------------------------
class _Mlp(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(i, h), nn.GELU(), nn.Linear(h, o)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DPM(nn.Module):
    def __init__(self, dim, num_task, num_basis, embed_dim):
        super().__init__()
        self.basis_mlp = _Mlp(dim, num_basis, num_basis)
        self.task_mlp = _Mlp(dim, num_task, num_task)
        self.prompt = nn.Parameter(torch.rand(1, num_task, num_basis, embed_dim, 1, 1))
        self.conv3x3 = nn.Conv2d(embed_dim, embed_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        b = x.shape[0]
        x = x.permute(0, 2, 3, 1)
        x_basis = F.softmax(self.basis_mlp(x).permute(0, 3, 1, 2).contiguous(), dim=1)  # B, N, H, W
        x_task = F.softmax(self.task_mlp(x).permute(0, 3, 1, 2).contiguous(), dim=1)  # B, T, H, W
        # (B,1,N,1,H,W) * (B,T,N,E,1,1) -> (B,T,N,E,H,W): the tensor issue 7 is about.
        prompts = x_basis.unsqueeze(1).unsqueeze(-3) * self.prompt.unsqueeze(0).repeat(b, 1, 1, 1, 1, 1, 1).squeeze(1)
        prompts = torch.sum(prompts, dim=2)  # B, T, E, H, W
        prompts = torch.sum(x_task.unsqueeze(-3) * prompts, dim=1)
        return self.conv3x3(prompts)


# --- the model ---------------------------------------------------------------------------------------------
def _rpi_sa(ws: int) -> torch.Tensor:
    ar = torch.arange(ws)
    coords = torch.stack(torch.meshgrid([ar, ar], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def _rpi_oca(ws: int, overlap_ratio: float) -> torch.Tensor:
    wse = ws + int(overlap_ratio * ws)
    a, e = torch.arange(ws), torch.arange(wse)
    ori = torch.stack(torch.meshgrid([a, a], indexing="ij")).flatten(1)
    ext = torch.stack(torch.meshgrid([e, e], indexing="ij")).flatten(1)
    rel = (ext[:, None, :] - ori[:, :, None]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - wse + 1
    rel[:, :, 1] += ws - wse + 1
    rel[:, :, 0] *= ws + wse - 1
    return rel.sum(-1)


class NaivePromptCIR(nn.Module):
    """Official-style PromptCIR (``MyModel(decoder=True)``); arguments as :class:`cirbench.archs.PromptCIR`."""

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
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        p1, p2, p3 = prompt_dims
        pim_heads = heads[2] if pim_heads is None else pim_heads
        ffn, ln = ffn_expansion_factor, LayerNorm_type
        self.pad_multiple = math.lcm(2 * window_size, 8)

        def tbs(width, n_heads, count):
            return nn.Sequential(*[TransformerBlock(width, n_heads, ffn, bias, ln) for _ in range(count)])

        def rhag(width, depth, n_heads):
            return RHAG(width, depth, n_heads, window_size, compress_ratio, squeeze_factor, conv_scale, overlap_ratio)

        self.patch_embed_input = _Proj("proj", nn.Conv2d(inp_channels, d1, 3, 1, 1, bias=bias))
        self.register_buffer("relative_position_index_SA", _rpi_sa(window_size))
        self.register_buffer("relative_position_index_OCA", _rpi_oca(window_size, overlap_ratio))
        self.prompt1 = DPM(d2, num_tasks, prompt_bases[0], p1)
        self.prompt2 = DPM(d3, num_tasks, prompt_bases[1], p2)
        self.prompt3 = DPM(d4, num_tasks, prompt_bases[2], p3)
        self.encoder_level1 = rhag(d1, num_blocks[0], heads[0])
        self.down1_2 = _downsample(d1)
        self.encoder_level2 = rhag(d2, num_blocks[1], heads[1])
        self.down2_3 = _downsample(d2)
        self.encoder_level3 = tbs(d3, heads[2], num_blocks[2])
        self.down3_4 = _downsample(d3)
        self.latent = tbs(d4, heads[3], num_blocks[3])
        self.up4_3 = _upsample(d3)
        self.reduce_chan_level3 = nn.Conv2d(d2 + d3, d3, kernel_size=1, bias=bias)
        self.noise_level3 = TransformerBlock(d4 + p3, pim_heads, ffn, bias, ln)
        self.reduce_noise_level3 = nn.Conv2d(d4 + p3, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = tbs(d3, heads[2], num_blocks[2])
        self.up3_2 = _upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.noise_level2 = TransformerBlock(d3 + p2, pim_heads, ffn, bias, ln)
        self.reduce_noise_level2 = nn.Conv2d(d3 + p2, d3, kernel_size=1, bias=bias)
        self.decoder_level2 = rhag(d2, num_blocks[1], heads[1])
        self.up2_1 = _upsample(d2)
        self.noise_level1 = TransformerBlock(d2 + p1, pim_heads, ffn, bias, ln)
        self.reduce_noise_level1 = nn.Conv2d(d2 + p1, d2, kernel_size=1, bias=bias)
        self.decoder_level1 = rhag(d2, num_blocks[0], heads[0])
        self.refinement = tbs(d2, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        params = {"rpi_sa": self.relative_position_index_SA, "rpi_oca": self.relative_position_index_OCA}
        enc1 = self.encoder_level1(self.patch_embed_input(inp_img), params)
        enc2 = self.encoder_level2(self.down1_2(enc1), params)
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        latent = torch.cat([latent, self.prompt3(latent)], 1)
        latent = self.reduce_noise_level3(self.noise_level3(latent))
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)
        dec3 = torch.cat([dec3, self.prompt2(dec3)], 1)
        dec3 = self.reduce_noise_level2(self.noise_level2(dec3))
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2, params)
        dec2 = torch.cat([dec2, self.prompt1(dec2)], 1)
        dec2 = self.reduce_noise_level1(self.noise_level1(dec2))
        dec1 = torch.cat([self.up2_1(dec2), enc1], 1)
        dec1 = self.refinement(self.decoder_level1(dec1, params))
        return self.output(dec1) + inp_img
