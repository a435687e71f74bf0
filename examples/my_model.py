"""A template for plugging your own network into cirbench.

Run it from the repository root (the current directory is searched for the module)::

    cirbench run --models examples.my_model:TinyNet --datasets classic5 --qf 10
    cirbench run --models examples.my_model:TinyNet --weights my_weights.safetensors ...

``module:attr`` may name an ``nn.Module`` class (built with no arguments), an instance, a factory
function marked with ``__cirbench_factory__ = True``, or a plain callable taking and returning NCHW
float batches in [0, 1]. cirbench reads these optional attributes from the network:

* ``in_channels``: 3 (RGB; gray data are replicated to three channels and the output's channel
  mean is kept) or 1 (gray only);
* ``pad_multiple`` and ``pad_mode`` ("reflect", "replicate", "symmetric", "official32" or "none"):
  the input is padded bottom/right to a multiple, and the output cropped back;
* ``takes_qf``: if true, non-blind protocols call ``net(x, qf_input=q)`` with ``q = 1 - QF/100``
  of shape (B, 1); the network may return ``(image, qf_pred)`` like FBCNN, and ``100 * (1 - qf_pred)``
  is recorded per image;
* ``cirbench_name``: the name in records (default: the attribute name, here ``TinyNet``).

The output is clamped to [0, 1] and rounded to uint8 by cirbench. Weights given with ``--weights``
go through the same safe loader as the model cards (``.pth``/``.ckpt`` with ``weights_only=True``,
or ``.safetensors``). An installed package can register the network under a short name through
the ``cirbench.models`` entry-point group instead (see ``cirbench.archs``).
"""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small residual CNN: ``x + body(x)``. The last conv starts at zero, so the untrained
    network returns its input unchanged (scores equal the JPEG baseline) until you train it."""

    in_channels = 3
    pad_multiple = 8  # keeps the stride-2 stage's shapes exact
    pad_mode = "reflect"
    takes_qf = False

    def __init__(self, width: int = 16):
        super().__init__()
        self.head = nn.Conv2d(self.in_channels, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.tail = nn.Conv2d(width, self.in_channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.head(x))
        f = f + self.up(torch.relu(self.down(f)))
        return x + self.tail(f)
