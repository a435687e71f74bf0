"""Helpers the tests share (``tests/`` is on ``sys.path``, see ``pythonpath`` in pyproject.toml): the official
state-dict key lists (names and shapes, copied from the spec into ``tests/data/keys``) and a tiny network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cirbench.zoo.checkpoints import unwrap_state_dict

KEYS = Path(__file__).resolve().parent / "data" / "keys"


def official_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` per line of ``tests/data/keys/<name>`` (``name [d0,d1,...]``)."""
    out = []
    for line in (KEYS / name).read_text().splitlines():
        if line.strip():
            key, shape = line.split(" ", 1)
            dims = shape.strip("[] ")
            out.append((key, tuple(int(v) for v in dims.split(",") if v)))
    return out


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """A weights file's flat ``{name: tensor}`` (safetensors, or a pickle read with ``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), str(path))


class TinyNet(nn.Module):
    """Residual two-conv net for training tests; pad_multiple 8 exercises validation padding."""

    pad_multiple = 8

    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)
