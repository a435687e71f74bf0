"""The speed anchor for the metric stack: FBCNN's own ``utils/utils_image.py`` (jiaxi-jiang/FBCNN), loaded from
outside the repository as written: ``rgb2ycbcr``, ``calculate_psnr``, ``calculate_ssim`` (float64
``cv2.filter2D`` with the 2-D window) and ``calculate_psnrb`` (``compute_bef`` loops over every row and column in
Python). It imports torchvision and matplotlib for functions the metrics never call: where torchvision does not
import (beside the CPU torch wheel), :func:`load` supplies a stand-in ``torchvision.utils``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

ENV = "CIRBENCH_FBCNN_UTILS"
COMMIT = "2cd940856798e258beaa8f9181a1ffc32c9931f9"
HOW_TO_GET = f"""\
FBCNN's metric code is the speed anchor of the metric stack; it is not part of cirbench. Fetch it once, outside
the repository:

    git clone https://github.com/jiaxi-jiang/FBCNN ~/anchors/FBCNN && git -C ~/anchors/FBCNN checkout {COMMIT[:12]}

then pass --fbcnn-utils ~/anchors/FBCNN/utils/utils_image.py (or export {ENV}=that path). A file holding just the
functions named above, copied verbatim from it, works too."""


def find(path: str | os.PathLike | None = None) -> Path | None:
    """FBCNN's utils_image.py: ``path``, else ``$CIRBENCH_FBCNN_UTILS``; None when neither names a file."""
    chosen = path or os.environ.get(ENV)
    if not chosen:
        return None
    p = Path(chosen).expanduser()
    return p if p.is_file() else None


def _ensure_torchvision_utils() -> None:
    try:
        import torchvision.utils  # noqa: F401
    except Exception:  # noqa: BLE001 (PyPI's torchvision fails to load beside the CPU torch wheel)
        def make_grid(*args, **kwargs):
            raise RuntimeError("torchvision stand-in: make_grid is not part of the metric anchor")

        tv = types.ModuleType("torchvision")
        tv.utils = types.ModuleType("torchvision.utils")
        tv.utils.make_grid = make_grid
        sys.modules["torchvision"], sys.modules["torchvision.utils"] = tv, tv.utils


def load(path: str | os.PathLike):
    """Import FBCNN's utils_image.py as module ``fbcnn_utils_image``."""
    _ensure_torchvision_utils()
    spec = importlib.util.spec_from_file_location("fbcnn_utils_image", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
