"""PromptCIR forward timings for ``nox -s bench``: cirbench's network and the official code side by side.

The official ``MyModel(decoder=True)`` (the anchor of issue 14) is not part of the repository: its benchmark runs
when ``$CIRBENCH_OFFICIAL_PROMPTCIR`` names its model.py (see ``official_anchor.py``) and is skipped otherwise.
Sizes are small so the suite stays quick; the full-size ratios (time, peak memory, at 1 and 2 threads) come from
``benchmarks/perf_report.py``, which measures each in a fresh process. Each pair sits in one benchmark group, so
pytest-benchmark's table shows the two side by side.
"""

import official_anchor
import pytest
import torch

from cirbench.archs import PromptCIR

SIZE = (64, 96)  # a multiple of 32, the official model's pad multiple
GROUP = f"promptcir official config forward {SIZE[0]}x{SIZE[1]}"


@pytest.fixture(scope="module")
def promptcir():
    """cirbench's PromptCIR (official config, seed 0) and an input."""
    torch.manual_seed(0)
    return PromptCIR().eval(), torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))


def _forward(model, x):
    with torch.inference_mode():
        return model(x)


@pytest.mark.benchmark(group=GROUP)
def test_promptcir_forward_ours(benchmark, promptcir):
    ours, x = promptcir
    out = benchmark.pedantic(_forward, args=(ours, x), rounds=3, warmup_rounds=1)
    assert out.shape == x.shape


@pytest.mark.benchmark(group=GROUP)
def test_promptcir_forward_official(benchmark, promptcir):
    path = official_anchor.find()
    if path is None:
        pytest.skip(f"official PromptCIR model.py not available (${official_anchor.ENV}; see official_anchor.py)")
    ours, x = promptcir
    ref = official_anchor.build(path).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    out = benchmark.pedantic(_forward, args=(ref, x), rounds=3, warmup_rounds=1)
    assert (out - _forward(ours, x)).abs().max() <= 1e-4
