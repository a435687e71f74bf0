"""Helpers the tests share (``tests/`` is on ``sys.path``, see ``pythonpath`` in pyproject.toml): the official
state-dict key lists (names and shapes, copied from the spec into ``tests/data/keys``), a tiny network, and
what the tests need of the standard datasets."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cirbench.zoo.checkpoints import unwrap_state_dict

KEYS = Path(__file__).resolve().parent / "data" / "keys"

# The sets the tests read, as `cirbench datasets fetch` lays them out (live1_gray: FBCNN's PNGs beside live1).
STANDARD_SETS = ("classic5", "live1", "live1_gray", "bsds500")


def standard_data_problem(root: str | os.PathLike | None) -> str | None:
    """Why the tests that read the standard datasets cannot use ``root`` (the skip reason, naming the command
    that fixes it), or None when every set is there."""
    from cirbench.eval.datasets import data_root, fetched

    fix = "cirbench datasets fetch " + " ".join(STANDARD_SETS)
    how = "(add --from MIRROR to copy them from a mirror root laid out as the data root)"
    if not root:
        return (f"needs the standard datasets: CIRBENCH_DATA is unset and {data_root()} does not exist; run "
                f"`{fix}` {how}, or fill another data root with `{fix} --data-root DIR` and set CIRBENCH_DATA=DIR")
    if not Path(root).is_dir():
        return (f"needs the standard datasets: CIRBENCH_DATA={root} is not a folder; fill it with "
                f"`{fix} --data-root {root}` {how}")
    missing = [n for n in STANDARD_SETS if not fetched(n, root)]
    if missing:
        return (f"needs the standard datasets: CIRBENCH_DATA={root} lacks {', '.join(missing)}; get them with "
                f"`cirbench datasets fetch {' '.join(missing)} --data-root {root}` {how}")
    return None


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
