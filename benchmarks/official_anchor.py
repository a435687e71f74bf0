"""The speed anchor for PromptCIR: the official ``model.py`` of lbc12345/PromptCIR-NTIRE24, loaded from outside
the repository (it is not ours to ship). ``MyModel(decoder=True)`` is the released network; its state-dict names
are cirbench's, so the same weights load into both.

The file imports ``einops`` (needed) and ``timm`` (only ``to_2tuple`` and ``trunc_normal_``): when timm is not
installed, :func:`load` puts a two-function stand-in for it on ``sys.path`` first.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ENV = "CIRBENCH_OFFICIAL_PROMPTCIR"
COMMIT = "563d76972bca65d75a97f01f1fc056234fa664ef"
HOW_TO_GET = f"""\
The official PromptCIR code is the speed anchor; it is not part of cirbench. Fetch it once, outside the repository:

    git clone https://github.com/lbc12345/PromptCIR-NTIRE24 ~/anchors/PromptCIR-NTIRE24
    git -C ~/anchors/PromptCIR-NTIRE24 checkout {COMMIT[:12]}

then pass its model.py: --official ~/anchors/PromptCIR-NTIRE24/model.py (or export {ENV}=that path).
It needs einops (pip install einops); timm is optional (a stand-in for the two helpers it uses is supplied)."""

_TIMM_STAND_IN = '''\
"""Stand-in for timm's to_2tuple / trunc_normal_ (the only names the official PromptCIR model.py imports)."""
import torch


def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)
'''


def find(path: str | os.PathLike | None = None) -> Path | None:
    """The official model.py: ``path``, else ``$CIRBENCH_OFFICIAL_PROMPTCIR``; None when neither names a file."""
    chosen = path or os.environ.get(ENV)
    if not chosen:
        return None
    p = Path(chosen).expanduser()
    if p.is_dir():
        p = p / "model.py"
    return p if p.is_file() else None


def _ensure_timm() -> None:
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        root = Path(tempfile.mkdtemp(prefix="cirbench-timm-stand-in-"))
        pkg = root / "timm" / "models"
        pkg.mkdir(parents=True)
        (root / "timm" / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("")
        (pkg / "layers.py").write_text(_TIMM_STAND_IN)
        sys.path.insert(0, str(root))
        for name in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
            del sys.modules[name]


def load(path: str | os.PathLike):
    """Import the official model.py as module ``promptcir_official``."""
    try:
        import einops  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"the official model.py needs einops: pip install einops ({exc})") from exc
    _ensure_timm()
    spec = importlib.util.spec_from_file_location("promptcir_official", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(path: str | os.PathLike):
    """The official network, ``MyModel(decoder=True)`` (random init; load weights into it)."""
    import warnings

    module = load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.meshgrid without indexing= in the official rpi code
        return module.MyModel(decoder=True)
