"""Issue 7's harness figures: the metric stack against a float64 numpy + OpenCV reference, and the overhead of
``cirbench run`` around the model forward. Run by ``perf_report.py`` (``--goals metrics,harness``) or alone:

    python benchmarks/harness_report.py --datasets classic5 --qf 10

Metrics: ``cirbench.metrics.image_metrics`` (y + rgb spaces) on a LIVE1 768x512 pair vs ``reference_metrics.py``,
images/s and the largest difference; pyiqa when it imports.

Harness: ``cirbench run`` (subprocess, the real CLI) on the blind protocol with the compact model, restricted by
``--datasets`` / ``--qf``; overhead = (wall - model) / wall from run.json. If the compact weights are not present,
random weights are written to a temporary card directory (``CIRBENCH_MODELS``). The serial cost of the work that
should overlap the forward (decode, JPEG, metrics) is timed too, for the split.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from reference_metrics import ref_image_metrics  # noqa: E402 (benchmarks/ on sys.path first)


# --- the metric stack -------------------------------------------------------------------------------------
def live1_pair(qf: int = 10):
    from cirbench import jpeg
    from cirbench.eval.datasets import get_dataset

    ds = get_dataset("live1", os.environ.get("CIRBENCH_DATA"))
    gt = ds.load(next(p for name, p in ds if name == "bikes.bmp"))
    return gt, jpeg.compress(gt, qf).pixels


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def metrics(args) -> dict:
    import cv2
    import torch

    from cirbench.metrics import image_metrics

    gt, jp = live1_pair()
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(args.metric_threads)
    cv2.setNumThreads(args.metric_threads)
    try:
        ours, ref = image_metrics(gt, jp), ref_image_metrics(gt, jp)
        diff = max(abs(ours[s][m] - ref[s][m]) for s in ref for m in ref[s])
        t_ours, t_ref = [], []
        for _ in range(args.metric_rounds):  # interleaved, so load changes hit both alike
            t_ours += _time(lambda: image_metrics(gt, jp), 3)
            t_ref += _time(lambda: ref_image_metrics(gt, jp), 3)
        out = {"image": "live1/bikes.bmp 768x512 qf10", "spaces": ["y", "rgb"], "threads": args.metric_threads,
               "ours_ms": 1e3 * statistics.median(t_ours), "reference_ms": 1e3 * statistics.median(t_ref),
               "max_abs_diff": diff}
        out["ours_images_per_s"] = 1e3 / out["ours_ms"]
        out["reference_images_per_s"] = 1e3 / out["reference_ms"]
        out["speed_vs_reference"] = out["reference_ms"] / out["ours_ms"]
        try:
            import pyiqa  # noqa: F401
        except Exception as exc:  # pyiqa needs torchvision, which may not load beside this torch
            out["pyiqa"] = f"not importable ({type(exc).__name__}: {exc})"
        else:
            out["pyiqa"] = _time_pyiqa(gt, jp, args.metric_rounds)
            out["speed_vs_pyiqa"] = out["pyiqa"]["ms"] / out["ours_ms"]
        out["met"] = {"as fast as reference": out["speed_vs_reference"] >= 1, "identical": diff <= 1e-9}
        if "speed_vs_pyiqa" in out:
            out["met"][">= 20x pyiqa"] = out["speed_vs_pyiqa"] >= 20
        return out
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


def _time_pyiqa(gt, jp, rounds: int) -> dict:
    import pyiqa
    import torch

    def t(a):
        return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255

    metrics = [pyiqa.create_metric(n, test_y_channel=True, color_space="ycbcr") for n in ("psnr", "ssim")]
    metrics += [pyiqa.create_metric(n) for n in ("psnr", "ssim")]  # rgb

    def run():
        return [float(m(t(jp), t(gt))) for m in metrics]

    run()
    return {"ms": 1e3 * statistics.median(_time(run, rounds)), "metrics": "psnr+ssim, y and rgb (no PSNR-B)"}


# --- harness overhead -------------------------------------------------------------------------------------
def _compact_card(tmp: Path) -> tuple[dict, str]:
    """Environment for `cirbench run`: the shipped compact weights, or random ones on a temporary card."""
    env = dict(os.environ)
    weights = REPO / "models" / "promptcir-compact.safetensors"
    if weights.exists():
        return env, f"shipped weights {weights.name}"
    import torch

    from cirbench.archs import build_arch
    from cirbench.config import load_toml
    from cirbench.zoo.checkpoints import save_state_dict

    card_src = REPO / "models" / "promptcir-compact.toml"
    card = load_toml(card_src)
    torch.manual_seed(0)
    cards = tmp / "cards"
    cards.mkdir()
    save_state_dict(build_arch(card["arch"], **card.get("kwargs", {})).state_dict(),
                    cards / "promptcir-compact.safetensors")
    shutil.copy(card_src, cards / "promptcir-compact.toml")
    env["CIRBENCH_MODELS"] = os.pathsep.join([str(cards), env.get("CIRBENCH_MODELS", "")]).rstrip(os.pathsep)
    return env, "random weights (models/promptcir-compact.safetensors absent), temporary card"


def serial_work_seconds(datasets: list[str], qfs: list[int]) -> float:
    """Decode + JPEG + metrics of the same jobs done serially (what the overlap must hide)."""
    from cirbench import jpeg
    from cirbench.eval.datasets import get_dataset
    from cirbench.metrics import image_metrics

    total = 0.0
    for name in datasets:
        ds = get_dataset(name, os.environ.get("CIRBENCH_DATA"))
        for _, path in ds:
            t0 = time.perf_counter()
            img = ds.load(path)
            for qf in qfs:
                comp = jpeg.compress(img, qf)
                image_metrics(img, comp.pixels)  # stands in for the restored image: same cost
            total += time.perf_counter() - t0
    return total


def harness(args, tmp: Path) -> dict:
    env, weights_note = _compact_card(tmp)
    out_dir = tmp / "run"
    cmd = [sys.executable, "-m", "cirbench", "run", "--protocol", "blind", "--models", "promptcir-compact",
           "--datasets", args.datasets, "--qf", args.qf, "--out", str(out_dir), "--threads", str(args.harness_threads)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    print(f"[harness] {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    process_s = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"cirbench run failed:\n{proc.stderr[-4000:]}")
    info = json.loads((out_dir / "run.json").read_text())
    wall, model = info["timing"]["wall_seconds"], info["timing"]["model_seconds"]
    n_rec = sum(1 for _ in (out_dir / "records.jsonl").open())
    serial = serial_work_seconds(args.datasets.split(","), [int(q) for q in args.qf.split(",")])
    out = {"protocol": "blind", "model": "promptcir-compact", "weights": weights_note, "datasets": args.datasets,
           "qf": args.qf, "threads": args.harness_threads, "records": n_rec, "wall_seconds": wall,
           "model_seconds": model, "overhead": (wall - model) / wall, "process_seconds": round(process_s, 3),
           "serial_decode_jpeg_metrics_seconds": round(serial, 3)}
    out["met"] = {"overhead <= 10%": out["overhead"] <= 0.10}
    return out



def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of these two figures (shared with perf_report.py)."""
    p.add_argument("--metric-threads", type=int, default=1, help="metrics: torch/OpenCV threads (default 1)")
    p.add_argument("--metric-rounds", type=int, default=10)
    p.add_argument("--datasets", default="live1", help="harness: datasets (default live1)")
    p.add_argument("--qf", default="10", help="harness: quality factors (default 10)")
    p.add_argument("--harness-threads", type=int, default=1, help="harness: cirbench run --threads (default 1)")
    p.add_argument("--data-root")


def summary(res: dict) -> list[str]:
    lines = []
    g2 = res.get("metrics")
    if g2 and "error" in g2:
        lines.append(f"metrics  failed: {g2['error']}")
    elif g2:
        lines.append(f"metrics  y+rgb 768x512, {g2['threads']} thread(s): ours {g2['ours_ms']:.1f} ms "
                     f"({g2['ours_images_per_s']:.1f} img/s), numpy+OpenCV {g2['reference_ms']:.1f} ms "
                     f"({g2['reference_images_per_s']:.1f} img/s): {g2['speed_vs_reference']:.2f}x, "
                     f"max |diff| {g2['max_abs_diff']:.1e}")
        pyiqa = g2["pyiqa"]
        lines.append("         pyiqa: " + (pyiqa if isinstance(pyiqa, str) else
                                            f"{pyiqa['ms']:.1f} ms, ours {g2['speed_vs_pyiqa']:.1f}x faster"))
        lines.append(f"         met: {g2['met']}")
    g3 = res.get("harness")
    if g3 and "error" in g3:
        lines.append(f"harness  failed: {g3['error']}")
    elif g3:
        lines.append(f"harness  cirbench run blind {g3['datasets']} qf {g3['qf']} promptcir-compact "
                     f"({g3['weights']}), {g3['threads']} thread(s), {g3['records']} records:")
        lines.append(f"         wall {g3['wall_seconds']:.2f} s, model {g3['model_seconds']:.2f} s, "
                     f"overhead {100 * g3['overhead']:.1f} % (serial decode+JPEG+metrics "
                     f"{g3['serial_decode_jpeg_metrics_seconds']:.2f} s)  met: {g3['met']}")
    return lines


def run(args, which: set[str]) -> dict:
    """The requested figures; a failure is recorded, not raised, so the other figures still print."""
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="cirbench-harness-") as td:
        for name, fn in (("metrics", lambda: metrics(args)), ("harness", lambda: harness(args, Path(td)))):
            if name in which:
                try:
                    res[name] = fn()
                except (Exception, SystemExit) as exc:  # noqa: BLE001 (reported in the summary)
                    res[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--goals", default="metrics,harness", help="comma-separated subset of metrics,harness")
    p.add_argument("--json", help="write the results as JSON here")
    add_arguments(p)
    args = p.parse_args(argv)
    res = run(args, {g.strip() for g in args.goals.split(",")})
    print("\n".join(summary(res)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
