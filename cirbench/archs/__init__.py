"""Network architectures, built from the official constructors' keyword arguments.

``build_arch(name, **kwargs)`` is how model cards and training configs make a network.
"""

from __future__ import annotations

from torch import nn

from .fbcnn import FBCNN
from .promptcir import PromptCIR
from .promptir import PromptIR

__all__ = ["FBCNN", "PromptCIR", "PromptIR", "ARCHS", "build_arch"]

ARCHS: dict[str, type[nn.Module]] = {"promptcir": PromptCIR, "promptir": PromptIR, "fbcnn": FBCNN}


def build_arch(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered architecture by name."""
    try:
        cls = ARCHS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}") from None
    return cls(**kwargs)
