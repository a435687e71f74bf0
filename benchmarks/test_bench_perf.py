"""Issue 7 timings for ``nox -s bench``: PromptCIR forward vs the naive official-style reference,. The metric stack
vs its float64 numpy + OpenCV reference is in ``test_bench_core.py``.

Sizes are small so the suite stays quick; the ratios that the issue's goals name (full size, peak memory, harness
overhead) come from ``benchmarks/perf_report.py``, which measures them in one run. Each pair sits in one
benchmark group, so pytest-benchmark's table shows the two side by side.
"""

import pytest
import torch
from official_promptcir_naive import NaivePromptCIR

from cirbench.archs import PromptCIR

SIZE = (64, 96)  # a multiple of 32, the official model's pad multiple


@pytest.fixture(scope="module")
def promptcir_pair():
    """cirbench's PromptCIR (official config) and the naive reference with the same random weights."""
    torch.manual_seed(0)
    ours = PromptCIR().eval()
    ref = NaivePromptCIR().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    return ours, ref, x


def _forward(model, x):
    with torch.inference_mode():
        return model(x)


@pytest.mark.benchmark(group=f"promptcir official forward {SIZE[0]}x{SIZE[1]}")
def test_promptcir_forward_ours(benchmark, promptcir_pair):
    ours, ref, x = promptcir_pair
    out = benchmark.pedantic(_forward, args=(ours, x), rounds=3, warmup_rounds=1)
    assert out.shape == x.shape


@pytest.mark.benchmark(group=f"promptcir official forward {SIZE[0]}x{SIZE[1]}")
def test_promptcir_forward_naive_official(benchmark, promptcir_pair):
    ours, ref, x = promptcir_pair
    out = benchmark.pedantic(_forward, args=(ref, x), rounds=3, warmup_rounds=1)
    assert (out - _forward(ours, x)).abs().max() <= 1e-4
