"""Issue 7's ratios in one run on one machine: PromptCIR forward, metric stack, harness overhead.

    python benchmarks/perf_report.py --size 480x736 --threads 2 --out results/perf/cpu-480x736.json
    python benchmarks/perf_report.py --size 128x192 --threads 1 --goals 1 --profile      # quick look

Goal 1: cirbench's PromptCIR vs the naive official-style reference (``official_promptcir_naive.py``) on one
random image with shared random weights (the official config unless ``--config compact``). Each variant
runs in a fresh subprocess so that its peak RSS (``VmHWM``, falling back to ``ru_maxrss``) is its own;
the outputs come back through files and are compared. ``--profile`` prints the top ops of each
(torch.profiler, after the timed forward so it does not touch the peak).

Goal 2: ``cirbench.metrics.image_metrics`` (y + rgb spaces) on a LIVE1 768x512 pair vs a float64 numpy +
OpenCV separable-filter implementation defined here, images/s and the largest difference; pyiqa when it
imports.

Goal 3: ``cirbench run`` (subprocess, the real CLI) on the blind protocol with the compact model, restricted
by ``--datasets`` / ``--qf``; overhead = (wall - model) / wall from run.json. If the compact weights are not
present, random weights are written to a temporary card directory (``CIRBENCH_MODELS``). The serial cost of
the work that should overlap the forward (decode, JPEG, metrics) is timed too, for the split.

Thread settings are explicit (``--threads`` for torch in goals 1 and 3; the metric stack is timed with the
harness's own settings) and recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reference_metrics import ref_image_metrics

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

COMPACT = dict(dim=12, num_blocks=[1, 2, 2, 2], num_refinement_blocks=1, window_size=8, squeeze_factor=4,
               prompt_dims=[16, 32, 64], prompt_bases=[16, 8, 4])
CONFIGS = {"official": {}, "compact": COMPACT}


# --- memory ------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM, else ru_maxrss), MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            kb //= 1024
    return kb / 1024


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


# --- goal 1: one variant in this (fresh) process -------------------------------------------------------------
def _build(variant: str, config: str):
    from cirbench.archs import PromptCIR

    if variant == "ours":
        return PromptCIR(**CONFIGS[config])
    from official_promptcir_naive import NaivePromptCIR

    return NaivePromptCIR(**CONFIGS[config])


def forward_child(args) -> None:
    """Run one variant: time ``--repeat`` forwards, report peak RSS, save the output."""
    import torch

    torch.set_num_threads(args.threads)
    h, w = args.size
    model = _build(args.variant, args.config)
    model.load_state_dict(torch.load(args.weights, weights_only=True), strict=True)
    model.eval()
    x = torch.load(args.input, weights_only=True)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    rss_before = rss_mb()
    times = []
    with torch.inference_mode():
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - t0)
    peak = peak_rss_mb()
    torch.save(y.contiguous(), args.output)
    result = {"variant": args.variant, "seconds": times, "rss_before_forward_mb": round(rss_before, 1),
              "peak_rss_mb": round(peak, 1), "threads": torch.get_num_threads()}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows)
        result["profile"] = table
    print("RESULT " + json.dumps(result))


def goal1(args, tmp: Path) -> dict:
    import torch

    from cirbench.archs import PromptCIR

    h, w = args.size
    torch.manual_seed(0)
    model = PromptCIR(**CONFIGS[args.config])
    if h % model.pad_multiple or w % model.pad_multiple:
        raise SystemExit(f"--size must be a multiple of {model.pad_multiple} for the {args.config} config")
    with torch.no_grad():  # bias tables at init are ~0; make them (and thus the masks) matter
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    torch.save(model.state_dict(), tmp / "weights.pt")
    torch.save(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)), tmp / "input.pt")
    del model
    out: dict = {"size": f"{h}x{w}", "config": args.config, "threads": args.threads, "repeat": args.repeat,
                 "channels_last": args.channels_last, "variants": {}}
    variants = ["ours", "naive"] if not args.skip_naive else ["ours"]
    for v in variants:
        cmd = [sys.executable, __file__, "_forward", "--variant", v, "--config", args.config,
               "--size", f"{h}x{w}", "--threads", str(args.threads), "--repeat", str(args.repeat),
               "--weights", str(tmp / "weights.pt"), "--input", str(tmp / "input.pt"),
               "--output", str(tmp / f"out_{v}.pt")]
        if args.profile:
            cmd += ["--profile", "--profile-rows", str(args.profile_rows)]
        if args.channels_last and v == "ours":
            cmd.append("--channels-last")
        print(f"[goal 1] {v}: {h}x{w}, {args.threads} thread(s) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{v} forward failed:\n{proc.stderr[-4000:]}")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        res = json.loads(line[len("RESULT "):])
        res["median_seconds"] = statistics.median(res["seconds"])
        out["variants"][v] = res
        if args.profile:
            print(f"\n--- top ops, {v} ({h}x{w}, {args.threads} thread(s)) ---\n{res['profile']}")
    if "naive" in out["variants"]:
        a, b = (torch.load(tmp / f"out_{v}.pt", weights_only=True) for v in ("ours", "naive"))
        ours, naive = out["variants"]["ours"], out["variants"]["naive"]
        out["max_abs_diff"] = float((a - b).abs().max())
        out["speedup"] = naive["median_seconds"] / ours["median_seconds"]
        out["peak_memory_ratio"] = ours["peak_rss_mb"] / naive["peak_rss_mb"]
        inc_o = ours["peak_rss_mb"] - ours["rss_before_forward_mb"]
        inc_n = naive["peak_rss_mb"] - naive["rss_before_forward_mb"]
        out["forward_memory_ratio"] = inc_o / inc_n if inc_n > 0 else float("nan")
        out["met"] = {"speed >= 2x": out["speedup"] >= 2, "peak <= 1/4": out["peak_memory_ratio"] <= 0.25,
                      "diff <= 1e-4": out["max_abs_diff"] <= 1e-4}
    return out


# --- goal 2: metric stack ----------------------------------------------------------------------------------
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


def goal2(args) -> dict:
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


# --- goal 3: harness overhead ------------------------------------------------------------------------------
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


def goal3(args, tmp: Path) -> dict:
    env, weights_note = _compact_card(tmp)
    out_dir = tmp / "run"
    cmd = [sys.executable, "-m", "cirbench", "run", "--protocol", "blind", "--models", "promptcir-compact",
           "--datasets", args.datasets, "--qf", args.qf, "--out", str(out_dir), "--threads", str(args.threads)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    print(f"[goal 3] {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
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
           "qf": args.qf, "threads": args.threads, "records": n_rec, "wall_seconds": wall,
           "model_seconds": model, "overhead": (wall - model) / wall, "process_seconds": round(process_s, 3),
           "serial_decode_jpeg_metrics_seconds": round(serial, 3)}
    out["met"] = {"overhead <= 10%": out["overhead"] <= 0.10}
    return out


# --- main --------------------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _summary(res: dict) -> str:
    lines = [f"perf report — {res['machine']}"]
    g1 = res.get("goal1")
    if g1:
        v = g1["variants"]
        lines.append(f"goal 1  PromptCIR {g1['config']} {g1['size']}, {g1['threads']} thread(s), fp32:")
        for name, r in v.items():
            lines.append(f"        {name:6s} {r['median_seconds']:8.2f} s   peak RSS {r['peak_rss_mb']:8.0f} MiB "
                         f"(before forward {r['rss_before_forward_mb']:.0f})")
        if "speedup" in g1:
            lines.append(f"        speed-up {g1['speedup']:.2f}x, peak memory {g1['peak_memory_ratio']:.3f} of naive "
                         f"(forward increment {g1['forward_memory_ratio']:.3f}), max |diff| {g1['max_abs_diff']:.2e}"
                         f"  met: {g1['met']}")
    g2 = res.get("goal2")
    if g2:
        lines.append(f"goal 2  metrics y+rgb 768x512, {g2['threads']} thread(s): ours {g2['ours_ms']:.1f} ms "
                     f"({g2['ours_images_per_s']:.1f} img/s), numpy+OpenCV {g2['reference_ms']:.1f} ms "
                     f"({g2['reference_images_per_s']:.1f} img/s): {g2['speed_vs_reference']:.2f}x, "
                     f"max |diff| {g2['max_abs_diff']:.1e}")
        pyiqa = g2["pyiqa"]
        lines.append("        pyiqa: " + (pyiqa if isinstance(pyiqa, str) else
                                           f"{pyiqa['ms']:.1f} ms, ours {g2['speed_vs_pyiqa']:.1f}x faster"))
        lines.append(f"        met: {g2['met']}")
    g3 = res.get("goal3")
    if g3:
        lines.append(f"goal 3  cirbench run blind {g3['datasets']} qf {g3['qf']} promptcir-compact "
                     f"({g3['weights']}), {g3['threads']} thread(s), {g3['records']} records:")
        lines.append(f"        wall {g3['wall_seconds']:.2f} s, model {g3['model_seconds']:.2f} s, "
                     f"overhead {100 * g3['overhead']:.1f} % (serial decode+JPEG+metrics "
                     f"{g3['serial_decode_jpeg_metrics_seconds']:.2f} s)  met: {g3['met']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="report", choices=["report", "_forward"], help=argparse.SUPPRESS)
    p.add_argument("--goals", default="1,2,3", help="comma-separated subset of 1,2,3")
    p.add_argument("--size", type=_size, default=(128, 192), help="goal 1 input HxW (default 128x192)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="official", help="goal 1 PromptCIR config")
    p.add_argument("--threads", type=int, default=1, help="torch threads for goals 1 and 3 (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="goal 1 forwards per variant (median reported)")
    p.add_argument("--channels-last", action="store_true", help="goal 1: run ours channels_last")
    p.add_argument("--skip-naive", action="store_true", help="goal 1: time ours only")
    p.add_argument("--profile", action="store_true", help="goal 1: print the top ops of each variant")
    p.add_argument("--profile-rows", type=int, default=15)
    p.add_argument("--metric-threads", type=int, default=1, help="goal 2 torch/OpenCV threads (default 1)")
    p.add_argument("--metric-rounds", type=int, default=10)
    p.add_argument("--datasets", default="live1", help="goal 3 datasets (default live1)")
    p.add_argument("--qf", default="10", help="goal 3 quality factors (default 10)")
    p.add_argument("--data-root")
    p.add_argument("--out", help="write the results as JSON here")
    # _forward (child) arguments
    p.add_argument("--variant", choices=["ours", "naive"], help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode == "_forward":
        forward_child(args)
        return 0

    import torch

    goals = {g.strip() for g in args.goals.split(",")}
    res: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
                 "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cirbench-perf-") as td:
        tmp = Path(td)
        if "1" in goals:
            res["goal1"] = goal1(args, tmp)
        if "2" in goals:
            res["goal2"] = goal2(args)
        if "3" in goals:
            res["goal3"] = goal3(args, tmp)
    res["load_average_after"] = os.getloadavg()
    print(_summary(res))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({k: v for k, v in res.items()}, indent=2, default=str) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
