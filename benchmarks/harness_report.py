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

import fbcnn_anchor  # noqa: E402 (benchmarks/ on sys.path first)
from reference_metrics import ref_image_metrics  # noqa: E402


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


def _fbcnn_spaces(fb, gt, jp) -> dict[str, dict[str, float]]:
    """FBCNN's own functions, as its test script calls them, in each of cirbench's colour spaces: its rounded Y
    (``rgb2ycbcr``), the same luma unrounded, OpenCV's full-range gray, and the RGB image (PSNR-B: the BEF of the
    restored image's rounded Y, as ``calculate_psnrb`` does for 3 channels)."""
    import cv2
    import numpy as np

    w = np.array([65.481, 128.553, 24.966])
    planes = {"y": (fb.rgb2ycbcr(gt), fb.rgb2ycbcr(jp)),
              "y-float": (gt.astype(np.float64) @ w / 255.0 + 16.0, jp.astype(np.float64) @ w / 255.0 + 16.0),
              "y-full": (cv2.cvtColor(gt, cv2.COLOR_RGB2GRAY), cv2.cvtColor(jp, cv2.COLOR_RGB2GRAY)),
              "rgb": (gt, jp)}
    return {s: {"psnr": fb.calculate_psnr(a, b), "ssim": float(fb.calculate_ssim(a, b)),
                "psnrb": fb.calculate_psnrb(a, b)} for s, (a, b) in planes.items()}


def _fbcnn_y(fb, gt, jp) -> dict[str, float]:
    g, j = fb.rgb2ycbcr(gt), fb.rgb2ycbcr(jp)
    return {"psnr": fb.calculate_psnr(g, j), "ssim": float(fb.calculate_ssim(g, j)), "psnrb": fb.calculate_psnrb(g, j)}


def _best_ms(fns: dict, rounds: int) -> dict[str, float]:
    """Best of ``rounds`` per function, the functions interleaved so a load change hits them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], _time(fn, 1)[0] * 1e3)
    return best


def bandwidth_gb_s(mib: int = 256, rounds: int = 5) -> float:
    """Memory bandwidth as this machine gives it to one large copy (np.copyto of ``mib`` MiB, read + write)."""
    import numpy as np

    a = np.ones(mib * 2**20 // 8)
    b = np.empty_like(a)
    t = min(_time(lambda: np.copyto(b, a), rounds))
    return 2 * a.nbytes / t / 1e9


# Full passes over a float64 plane (H x W x 8 bytes) that scoring one image in the y space makes, counted in
# cirbench/metrics (NumPy engine): Y of both images 2 x 7 (three weighted adds, divide, add, round, each a read
# and a write), MSE 4, BEF 2 x 5 (a difference, its square, a column or row sum), SSIM 2 + 3 (the products)
# + 4 x 3 (four separable filters: a row pass into a buffer, a column pass out) + 15 (the map, in place, and its
# mean). A lower bound on the bytes moved; the planes (3 MB at 768 x 512) fit in the last-level cache, so DRAM
# bandwidth bounds the time from below with room to spare.
Y_PLANE_PASSES = 14 + 4 + 10 + 5 + 12 + 15


def metrics(args) -> dict:
    """The metric stack against FBCNN's own code (the anchor) and a vectorised NumPy + OpenCV reference, on the
    LIVE1 bikes.bmp pair at QF 10: the y space alone (``cirbench.score(..., space="y")``) and every colour space
    (``image_metrics``), at each of ``--metric-threads``, best of ``--metric-rounds``."""
    import cv2
    import torch

    import cirbench
    from cirbench.metrics import COLOUR_SPACES, image_metrics

    fb_path = fbcnn_anchor.find(args.fbcnn_utils)
    if (args.fbcnn_utils or os.environ.get(fbcnn_anchor.ENV)) and fb_path is None:
        raise SystemExit(f"no FBCNN utils_image.py at {args.fbcnn_utils or os.environ[fbcnn_anchor.ENV]}\n\n"
                         + fbcnn_anchor.HOW_TO_GET)
    fb = fbcnn_anchor.load(fb_path) if fb_path else None
    gt, jp = live1_pair()
    h, w = gt.shape[:2]
    out = {"image": f"live1/bikes.bmp {w}x{h} qf10", "rounds": args.metric_rounds,
           "anchor": str(fb_path) if fb_path else "absent: " + fbcnn_anchor.HOW_TO_GET.splitlines()[0],
           "by_threads": {}}
    ours_all, ref = image_metrics(gt, jp), ref_image_metrics(gt, jp)
    out["max_abs_diff_vs_reference"] = max(abs(ours_all[s][m] - ref[s][m]) for s in ref for m in ref[s])
    if fb is not None:
        anchor = _fbcnn_spaces(fb, gt, jp)
        out["max_abs_diff_vs_fbcnn"] = {m: max(abs(ours_all[s][m] - anchor[s][m]) for s in COLOUR_SPACES)
                                        for m in ("psnr", "ssim", "psnrb")}
        out["identical"] = (out["max_abs_diff_vs_fbcnn"]["psnr"] <= 1e-9 and out["max_abs_diff_vs_fbcnn"]["ssim"]
                            <= 1e-9 and out["max_abs_diff_vs_fbcnn"]["psnrb"] <= 1e-6)
    saved = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for threads in args.metric_threads:
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            fns = {"ours_y": lambda: cirbench.score(jp, gt, space="y"), "ours_all": lambda: image_metrics(gt, jp),
                   "ours_y_rgb": lambda: image_metrics(gt, jp, spaces=("y", "rgb")),
                   "reference_y_rgb": lambda: ref_image_metrics(gt, jp)}
            if fb is not None:
                fns["fbcnn_y"] = lambda: _fbcnn_y(fb, gt, jp)
                fns["fbcnn_all"] = lambda: _fbcnn_spaces(fb, gt, jp)
            for fn in fns.values():
                fn()  # warm-up
            ms = _best_ms(fns, args.metric_rounds)
            row = {f"{k}_ms": round(v, 2) for k, v in ms.items()}
            row["vs_reference_y_rgb"] = ms["reference_y_rgb"] / ms["ours_y_rgb"]
            if fb is not None:
                row["vs_fbcnn_y"] = ms["fbcnn_y"] / ms["ours_y"]
                row["vs_fbcnn_all"] = ms["fbcnn_all"] / ms["ours_all"]
            out["by_threads"][str(threads)] = row
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])
    gbs = bandwidth_gb_s()
    plane_bytes = h * w * 8
    bound_ms = Y_PLANE_PASSES * plane_bytes / (gbs * 1e9) * 1e3
    best_y = min(r["ours_y_ms"] for r in out["by_threads"].values())
    out["bandwidth"] = {"copy_gb_s": round(gbs, 2), "how": "np.copyto of 256 MiB float64, best of 5, read + write",
                        "y_plane_passes": Y_PLANE_PASSES, "y_bytes_mb": round(Y_PLANE_PASSES * plane_bytes / 1e6, 1),
                        "y_bound_ms": round(bound_ms, 2), "fraction_of_limit": round(bound_ms / best_y, 3)}
    out["met"] = {">= 3x FBCNN (y, 2 threads)": out["by_threads"].get("2", {}).get("vs_fbcnn_y", 0) >= 3,
                  "moonshot 10x": out["by_threads"].get("2", {}).get("vs_fbcnn_y", 0) >= 10,
                  "identical": out.get("identical", False)}
    try:
        import pyiqa  # noqa: F401
    except Exception as exc:  # noqa: BLE001 (pyiqa needs torchvision, which may not load beside this torch)
        out["pyiqa"] = f"not importable ({type(exc).__name__})"
    else:
        out["pyiqa"] = _time_pyiqa(gt, jp, args.metric_rounds)
    return out


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



def _stages(run_dir: Path) -> dict:
    """images/s and each stage's share of the wall time, from a run's run.json (cirbench.eval.runner.STAGES)."""
    t = json.loads((run_dir / "run.json").read_text())["timing"]
    wall, stages, n = t["wall_seconds"], t["stage_seconds"], t["images"]
    threads = {"score": t.get("scorers", 1)}  # the stage's threads: its capacity is that many walls
    share = {k: round(v / (wall * threads.get(k, 1)), 3) for k, v in stages.items()}
    bound = max(share, key=share.get)
    return {"images": n, "wall_seconds": wall, "images_per_s": round(n / wall, 2), "scorers": threads["score"],
            "stage_seconds": stages, "stage_share": share,
            "sum_of_stages_seconds": round(sum(stages.values()), 3), "bound_by": bound}


def outputs(args, tmp: Path) -> dict:
    """Released outputs scored through ``outputs:``: the JPEG model's saved images of ``--outputs-datasets`` at
    ``--outputs-qf`` (written by ``cirbench run --save-images`` first, itself timed), scored again as a folder of
    another program's outputs. A run overlaps reading, JPEG, the model (here: reading the output PNG) and
    scoring; it should take about as long as its busiest stage, not their sum."""
    base = [sys.executable, "-m", "cirbench", "run", "--datasets", args.outputs_datasets, "--qf", args.outputs_qf,
            "--no-profile", "--threads", str(args.harness_threads)]
    if args.data_root:
        base += ["--data-root", args.data_root]
    made, scored = tmp / "jpeg", tmp / "outputs"
    template = str(made / "images" / "jpeg" / "{dataset}" / "jpeg-q{qf}" / "{stem}.png")
    for cmd in (base + ["--models", "jpeg", "--save-images", "--out", str(made)],
                base + ["--models", f"outputs:{template}", "--out", str(scored)]):
        print(f"[outputs] {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            raise SystemExit(f"cirbench run failed:\n{proc.stderr[-4000:]}")
    return {"datasets": args.outputs_datasets, "qf": args.outputs_qf, "threads": args.harness_threads,
            "jpeg_with_save_images": _stages(made), "outputs": _stages(scored)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of these two figures (shared with perf_report.py)."""
    p.add_argument("--metric-threads", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2],
                   help="metrics: torch/OpenCV thread counts (default 1,2)")
    p.add_argument("--metric-rounds", type=int, default=7, help="metrics: best of this many (default 7)")
    p.add_argument("--fbcnn-utils", help=f"FBCNN's utils/utils_image.py, the metric anchor (${fbcnn_anchor.ENV})")
    p.add_argument("--datasets", default="live1", help="harness: datasets (default live1)")
    p.add_argument("--qf", default="10", help="harness: quality factors (default 10)")
    p.add_argument("--harness-threads", type=int, default=1, help="harness: cirbench run --threads (default 1)")
    p.add_argument("--outputs-datasets", default="live1,bsds500", help="outputs: datasets (default live1,bsds500)")
    p.add_argument("--outputs-qf", default="10,20,30,40", help="outputs: quality factors (default 10,20,30,40)")
    p.add_argument("--data-root")


def summary(res: dict) -> list[str]:
    lines = []
    g2 = res.get("metrics")
    if g2 and "error" in g2:
        lines.append(f"metrics  failed: {g2['error']}")
    elif g2:
        lines.append(f"metrics  {g2['image']}, best of {g2['rounds']}; anchor: {g2['anchor']}")
        for t, r in g2["by_threads"].items():
            fb = (f"; FBCNN y {r['fbcnn_y_ms']:.1f} ms -> {r['vs_fbcnn_y']:.2f}x, FBCNN all spaces "
                  f"{r['fbcnn_all_ms']:.1f} ms -> {r['vs_fbcnn_all']:.2f}x" if "fbcnn_y_ms" in r else "")
            lines.append(f"  {t} thread(s): ours y {r['ours_y_ms']:.1f} ms, all 4 colour spaces {r['ours_all_ms']:.1f} "
                         f"ms{fb}; y+rgb vs NumPy+OpenCV reference {r['reference_y_rgb_ms']:.1f} / "
                         f"{r['ours_y_rgb_ms']:.1f} ms = {r['vs_reference_y_rgb']:.2f}x")
        bw = g2["bandwidth"]
        lines.append(f"  bandwidth {bw['copy_gb_s']} GB/s ({bw['how']}); y scoring moves >= {bw['y_bytes_mb']} MB "
                     f"({bw['y_plane_passes']} plane passes) -> >= {bw['y_bound_ms']} ms: "
                     f"{100 * bw['fraction_of_limit']:.0f} % of the bandwidth limit")
        if "max_abs_diff_vs_fbcnn" in g2:
            lines.append(f"  max |ours - FBCNN| {g2['max_abs_diff_vs_fbcnn']}; vs reference "
                         f"{g2['max_abs_diff_vs_reference']:.1e}")
        lines.append(f"  met: {g2['met']}")
    g4 = res.get("outputs")
    if g4 and "error" in g4:
        lines.append(f"outputs  failed: {g4['error']}")
    elif g4:
        for label, key in (("jpeg --save-images", "jpeg_with_save_images"), ("outputs: (released)", "outputs")):
            r = g4[key]
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in r["stage_share"].items())
            lines.append(f"outputs  {label} {g4['datasets']} qf {g4['qf']}: {r['images']} images in "
                         f"{r['wall_seconds']:.1f} s = {r['images_per_s']} img/s; stage busy time / wall (score: "
                         f"per thread of {r['scorers']}): {shares} "
                         f"(sum {r['sum_of_stages_seconds']:.1f} s); bound by {r['bound_by']}")
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
        for name, fn in (("metrics", lambda: metrics(args)), ("harness", lambda: harness(args, Path(td))),
                         ("outputs", lambda: outputs(args, Path(td)))):
            if name in which:
                try:
                    res[name] = fn()
                except (Exception, SystemExit) as exc:  # noqa: BLE001 (reported in the summary)
                    res[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--goals", default="metrics,harness", help="comma-separated subset of metrics,harness,outputs")
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
