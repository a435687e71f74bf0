"""nox sessions: ``tests`` (default), ``lint``, ``bench`` and ``iqa`` (run by name).

    nox                 # tests
    nox -s lint
    nox -s bench        # speed, compared with benchmarks/baseline/baseline.json
    nox -s iqa          # pyiqa's environment and its tests (perceptual metrics)
"""

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
BENCH_BASELINE = Path("benchmarks/baseline/baseline.json")


def install_torch(session: nox.Session) -> None:
    """torch first, pinned, so ``pip install -e .`` keeps it. pip's own configuration picks the build (a
    local CPU wheel via find-links, say); ``$CIRBENCH_TORCH_INDEX`` names an index instead, e.g. PyTorch's
    CPU index to keep a multi-GB CUDA build off a machine without a GPU."""
    index = os.environ.get("CIRBENCH_TORCH_INDEX")
    session.install(TORCH, *(["--index-url", index] if index else []))


@nox.session
def tests(session: nox.Session) -> None:
    install_torch(session)
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "cirbench", "tests", "benchmarks", "noxfile.py")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """pytest-benchmark suite; saves every run under .benchmarks/ and compares with the committed baseline.

    A mean more than 25 % slower than the baseline fails, except on CI (``$CI`` set), where the comparison
    is informational: shared runners differ from the baseline's machine and from run to run by more than
    that (see docs/regress.md).
    """
    install_torch(session)
    session.install("-e", ".[test]")
    args = ["pytest", "benchmarks", "--benchmark-only", "--benchmark-autosave", "-p", "no:cacheprovider"]
    informational = bool(os.environ.get("CI"))
    if not BENCH_BASELINE.is_file():
        session.warn(f"no {BENCH_BASELINE}: timings are saved but not compared")
    elif informational:
        args.append(f"--benchmark-compare={BENCH_BASELINE}")  # the table only: slower is no failure here
    else:
        args += [f"--benchmark-compare={BENCH_BASELINE}", "--benchmark-compare-fail=mean:25%"]
    session.run(*args, *session.posargs)
    # Ratios measured in one run: ours vs the official PromptCIR forward ($CIRBENCH_OFFICIAL_PROMPTCIR names its
    # model.py, see docs/performance.md), metrics vs a numpy + OpenCV reference, harness overhead. Small here; the
    # paper-scale figure is `python benchmarks/perf_report.py` (480x736) on an idle machine.
    session.run("python", "benchmarks/perf_report.py", "--size", "128x192", "--datasets", "classic5", "--qf", "10")


# pyiqa's environment. pyiqa imports torchvision, and PyPI's torchvision 0.28.0 is a CUDA build that fails at import
# beside the CPU wheel torch 2.13.0+cpu ("operator torchvision::nms does not exist"); PyPI's own torch 2.13.0 (a CUDA
# 13 build, which computes on the CPU too) loads with it. --isolated: pip ignores its configuration, so the local CPU
# wheel is not picked. openai-clip (clipiqa) imports pkg_resources, which setuptools 82 removed.
IQA = ("torch==2.13.0", "torchvision==0.28.0", "pyiqa==0.1.16", "setuptools>=77.0.3,<82")
IQA_TESTS = ("tests/metrics/test_iqa.py", "tests/metrics/test_iqa_cards.py", "tests/metrics/test_spec.py",
             "tests/report/test_published_metrics.py", "tests/test_layers.py")


@nox.session(default=False)
def iqa(session: nox.Session) -> None:
    """pyiqa's metrics: build its environment (about 6.4 GB) and run the pyiqa tests (records equal pyiqa's own
    calls, the verified weight fetch, ranking direction), plus the metric-card and published-row tests."""
    session.run("python", "-m", "pip", "--isolated", "install", *IQA)
    session.install("-e", ".[test,iqa]")  # torch, torchvision and pyiqa above already satisfy cirbench
    session.run("python", "-c", "import pyiqa, torchvision; print('pyiqa', pyiqa.__version__, 'torchvision', "
                "torchvision.__version__)")
    session.run("pytest", "-q", *(session.posargs or IQA_TESTS))
