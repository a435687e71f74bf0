"""FBCNN (Jiang et al., ICCV 2021): flexible blind JPEG artifact removal.

Re-implementation of the official ``models/network_fbcnn.py`` (act_mode 'R', no BN, strided-conv
downsampling, transposed-conv upsampling). Module layout mirrors the original so the released
``fbcnn_color.pth`` / ``fbcnn_gray.pth`` state_dicts load with ``strict=True`` (see
``spec/keys/fbcnn_*.txt``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv3x3(ch_in: int, ch_out: int) -> nn.Conv2d:
    return nn.Conv2d(ch_in, ch_out, kernel_size=3, stride=1, padding=1, bias=True)


def _conv_relu_conv(ch: int) -> nn.Sequential:
    # Indices 0 / 2 give the official key names ``res.0.*`` and ``res.2.*``.
    return nn.Sequential(_conv3x3(ch, ch), nn.ReLU(inplace=True), _conv3x3(ch, ch))


class ResBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x)))."""

    def __init__(self, ch: int):
        super().__init__()
        self.res = _conv_relu_conv(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class QFAttention(nn.Module):
    """Residual block whose branch is modulated by the QF embedding: x + (gamma * res(x) + beta)."""

    def __init__(self, ch: int):
        super().__init__()
        self.res = _conv_relu_conv(ch)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        gamma = gamma[:, :, None, None]
        beta = beta[:, :, None, None]
        return x + (gamma * self.res(x) + beta)


def _encoder_stage(ch: int, ch_next: int, nb: int) -> nn.Sequential:
    # nb ResBlocks, then a 2x2 stride-2 conv (official "strideconv" downsampler).
    return nn.Sequential(
        *[ResBlock(ch) for _ in range(nb)],
        nn.Conv2d(ch, ch_next, kernel_size=2, stride=2, padding=0, bias=True),
    )


def _decoder_stage(ch: int, ch_next: int, nb: int) -> nn.ModuleList:
    # Index 0 is the 2x2 stride-2 transposed conv, 1..nb the QF-modulated blocks.
    return nn.ModuleList(
        [
            nn.ConvTranspose2d(ch, ch_next, kernel_size=2, stride=2, padding=0, bias=True),
            *[QFAttention(ch_next) for _ in range(nb)],
        ]
    )


class FBCNN(nn.Module):
    """Flexible Blind CNN for JPEG artifact removal.

    ``forward(x, qf_input=None)`` returns ``(restored, qf_pred)``; ``qf_pred`` is (B, 1) in [0, 1]
    and means ``1 - QF/100``. Passing ``qf_input`` (same meaning) overrides the predicted value for
    the decoder modulation. The input is replicate-padded bottom/right to a multiple of 8 internally
    and the output cropped back; there is no global residual to the input.
    """

    #: Informational: the network pads its input itself.
    pad_multiple = 8

    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        nc: tuple[int, int, int, int] | list[int] = (64, 128, 256, 512),
        nb: int = 4,
    ):
        super().__init__()
        if len(nc) != 4:
            raise ValueError(f"nc must have 4 entries, got {nc!r}")
        c1, c2, c3, c4 = nc
        self.nb = nb

        self.m_head = _conv3x3(in_nc, c1)
        self.m_down1 = _encoder_stage(c1, c2, nb)
        self.m_down2 = _encoder_stage(c2, c3, nb)
        self.m_down3 = _encoder_stage(c3, c4, nb)
        self.m_body_encoder = nn.Sequential(*[ResBlock(c4) for _ in range(nb)])
        self.m_body_decoder = nn.Sequential(*[ResBlock(c4) for _ in range(nb)])
        self.m_up3 = _decoder_stage(c4, c3, nb)
        self.m_up2 = _decoder_stage(c3, c2, nb)
        self.m_up1 = _decoder_stage(c2, c1, nb)
        self.m_tail = _conv3x3(c1, out_nc)

        # The official code hard-codes 512 for the MLP widths; that equals nc[3] at the released
        # configuration, and using nc[3] lets reduced configs (tests) build.
        self.qf_pred = nn.Sequential(
            *[ResBlock(c4) for _ in range(nb)],
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(c4, c4),
            nn.ReLU(),
            nn.Linear(c4, c4),
            nn.ReLU(),
            nn.Linear(c4, 1),
            nn.Sigmoid(),
        )
        self.qf_embed = nn.Sequential(
            nn.Linear(1, c4),
            nn.ReLU(),
            nn.Linear(c4, c4),
            nn.ReLU(),
            nn.Linear(c4, c4),
            nn.ReLU(),
        )
        self.to_gamma_3 = nn.Sequential(nn.Linear(c4, c3), nn.Sigmoid())
        self.to_beta_3 = nn.Sequential(nn.Linear(c4, c3), nn.Tanh())
        self.to_gamma_2 = nn.Sequential(nn.Linear(c4, c2), nn.Sigmoid())
        self.to_beta_2 = nn.Sequential(nn.Linear(c4, c2), nn.Tanh())
        self.to_gamma_1 = nn.Sequential(nn.Linear(c4, c1), nn.Sigmoid())
        self.to_beta_1 = nn.Sequential(nn.Linear(c4, c1), nn.Tanh())

    def _decode(self, stage: nn.ModuleList, x: torch.Tensor, gamma, beta) -> torch.Tensor:
        x = stage[0](x)
        for block in stage[1:]:
            x = block(x, gamma, beta)
        return x

    def forward(
        self, x: torch.Tensor, qf_input: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        pad_b, pad_r = -h % self.pad_multiple, -w % self.pad_multiple
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b), mode="replicate")

        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        feat = self.m_body_encoder(x4)
        qf = self.qf_pred(feat)
        feat = self.m_body_decoder(feat)

        embedding = self.qf_embed(qf if qf_input is None else qf_input.to(qf))

        feat = feat + x4
        feat = self._decode(self.m_up3, feat, self.to_gamma_3(embedding), self.to_beta_3(embedding))
        feat = feat + x3
        feat = self._decode(self.m_up2, feat, self.to_gamma_2(embedding), self.to_beta_2(embedding))
        feat = feat + x2
        feat = self._decode(self.m_up1, feat, self.to_gamma_1(embedding), self.to_beta_1(embedding))
        feat = feat + x1
        out = self.m_tail(feat)
        return out[..., :h, :w], qf
