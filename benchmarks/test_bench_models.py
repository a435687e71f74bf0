"""Model forward time and peak memory on CPU, fp32, at 480x736 (``nox -s bench``, or
``pytest benchmarks --benchmark-only``).

Each benchmark stores in ``extra_info``: ``peak_rss_mib``, the peak growth of the resident set over
the timed forwards (``cirbench.zoo.profile.peak_rss_growth``: VmHWM after minus VmRSS before, the
high-water mark reset first; weights and input excluded, activations and allocator overhead
included), the parameter count and the thread count (one: see conftest.py).

The full official-config PromptCIR (34.75 M parameters) takes minutes per forward on one thread,
so it runs only with ``CIRBENCH_BENCH_FULL=1``, one round.
"""

import os

import pytest
import torch

from cirbench.archs import FBCNN, PromptCIR
from cirbench.zoo.cards import load_card
from cirbench.zoo.factory import build_network
from cirbench.zoo.profile import peak_rss_growth

H, W = 480, 736  # a multiple of 32: no padding for any model here

full = pytest.mark.skipif(os.environ.get("CIRBENCH_BENCH_FULL") != "1",
                          reason="full-size PromptCIR takes minutes: set CIRBENCH_BENCH_FULL=1")


def _input(channels: int = 3) -> torch.Tensor:
    return torch.rand(1, channels, H, W, generator=torch.Generator().manual_seed(0))


def _run(benchmark, net: torch.nn.Module, x: torch.Tensor, rounds: int) -> None:
    net.eval()

    def forward():
        with torch.inference_mode():
            return net(x)

    out, peak = peak_rss_growth(lambda: benchmark.pedantic(forward, rounds=rounds, iterations=1, warmup_rounds=0))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    benchmark.extra_info.update({
        "input": f"1x{x.shape[1]}x{H}x{W}",
        "params": sum(p.numel() for p in net.parameters()),
        "peak_rss_mib": None if peak is None else round(peak / 2**20, 1),
        "threads": torch.get_num_threads(),
    })


@full
def test_promptcir_official_config_forward(benchmark):
    """Our PromptCIR at the official NTIRE config (random weights: speed and memory do not depend on them)."""
    torch.manual_seed(0)
    _run(benchmark, PromptCIR(), _input(), rounds=1)


def test_promptcir_compact_forward(benchmark):
    """The ``promptcir-compact`` card's architecture (random weights)."""
    torch.manual_seed(0)
    _run(benchmark, build_network(load_card("promptcir-compact")), _input(), rounds=2)


def test_fbcnn_reduced_forward(benchmark):
    """FBCNN at a quarter of the official widths (nc 16-128, nb 2): the CNN path, QF head included."""
    torch.manual_seed(0)
    _run(benchmark, FBCNN(nc=[16, 32, 64, 128], nb=2), _input(), rounds=3)
