"""Benchmark set-up: one thread everywhere, deliberately.

Single-thread timings are comparable between machines with different core counts and are not
disturbed by other jobs on a shared CI runner; multi-thread speed-ups are the libraries' business.
"""

import os
import sys
from pathlib import Path

import pytest

# The benchmarks' own helpers (reference_metrics.py, official_anchor.py) import by name; pytest's importlib mode
# (pyproject.toml) does not put this folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield


@pytest.fixture(scope="session")
def live1_pair():
    """A 768x512 LIVE1 image (embedded copy) and its QF 10 JPEG: the metrics' typical input."""
    from cirbench import jpeg
    from cirbench.eval.datasets import get_dataset

    ds = get_dataset("live1", os.environ.get("CIRBENCH_DATA"))
    gt = ds.load(next(p for name, p in ds if name == "bikes.bmp"))
    assert gt.shape == (512, 768, 3)
    return gt, jpeg.compress(gt, 10).pixels
