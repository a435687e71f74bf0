"""nox sessions: ``tests`` (default), ``lint``, ``bench`` and ``iqa`` (run by name).

    nox                 # tests
    nox -s lint
    nox -s bench        # speed, compared with benchmarks/baseline/baseline.json
    nox -s iqa          # optional cross-check against pyiqa
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


# The cross-check: our Y PSNR/SSIM and pyiqa's on one LIVE1 pair. pyiqa uses an unrounded Y (BasicSR's
# convention), so its numbers differ slightly; the point is to catch a gross disagreement.
_IQA_CHECK = """
import numpy as np, torch, pyiqa
from cirbench import jpeg
from cirbench.eval.datasets import get_dataset
from cirbench.metrics import image_metrics
ds = get_dataset("live1")
gt = ds.load(ds.files[0]); jp = jpeg.compress(gt, 10).pixels
ours = image_metrics(gt, jp)["y"]
t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
for name in ("psnr", "ssim"):
    theirs = float(pyiqa.create_metric(name, test_y_channel=True, color_space="ycbcr")(t(jp), t(gt)))
    print(f"{name}: cirbench {ours[name]:.4f}  pyiqa {theirs:.4f}  diff {ours[name] - theirs:+.4f}")
    assert abs(ours[name] - theirs) < (0.1 if name == "psnr" else 0.005), name
"""


@nox.session(default=False)
def iqa(session: nox.Session) -> None:
    """Optional: compare our metrics with pyiqa's (pyiqa needs torchvision, which may not install)."""
    install_torch(session)
    session.install("-e", ".[iqa]")
    session.run("python", "-c", _IQA_CHECK)
