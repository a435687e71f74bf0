"""Shared test set-up: one torch thread (the machine is shared) and the evaluation data root."""

import os
from pathlib import Path

import pytest

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _single_thread_and_data_root():
    import torch

    torch.set_num_threads(1)
    if _SHARED_DATA.is_dir() and not os.environ.get("CIRBENCH_DATA"):
        os.environ["CIRBENCH_DATA"] = str(_SHARED_DATA)
    yield
