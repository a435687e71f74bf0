"""Shared test set-up: one torch thread (the machine is shared) and the evaluation data root.

``$CIRBENCH_DATA`` names the standard datasets; when it is unset and a ``shared/datasets`` folder sits
beside the repository, that is used. Only tests that need a standard dataset read it (through the
``data_root`` fixture), and they skip with one reason when it is absent.
"""

import os
from pathlib import Path

import pytest

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
if not os.environ.get("CIRBENCH_DATA") and _SHARED_DATA.is_dir():
    os.environ["CIRBENCH_DATA"] = str(_SHARED_DATA)  # set before test modules read it at import


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def data_root():
    """The standard datasets' root; tests that need them skip when it is absent."""
    root = os.environ.get("CIRBENCH_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("needs the standard datasets: set CIRBENCH_DATA")
    return Path(root)
