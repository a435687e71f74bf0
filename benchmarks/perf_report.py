"""PromptCIR speed and memory against the official code (issue 14), measured on this machine in one run.

    python benchmarks/perf_report.py --official ~/anchors/PromptCIR-NTIRE24/model.py --json results/perf/cpu.json
    python benchmarks/perf_report.py --size 128x192 --threads 1 --goals speed           # a quick look

Run it on an otherwise idle machine: every figure is a ratio or a rate of this machine at this moment. Each
measurement runs in a fresh subprocess, so each peak RSS (VmHWM) is its own and no run warms another's caches:

* the machine: CPU model, bf16 capability (AVX512-BF16 / AMX, as oneDNN reports it; cirbench refuses
  ``--precision bf16`` without it) and the fp32 and bf16 matmul rates at each thread count (best of a few square
  products): the peak the model is compared with;
* the forward's FLOPs: ``FlopCounterMode`` on the official model on the meta device (nothing is computed);
* one forward per process at ``--size``, fp32, of the official ``MyModel(decoder=True)`` (the anchor, see
  ``official_anchor.py``; ``--official`` or ``$CIRBENCH_OFFICIAL_PROMPTCIR``) and of cirbench's ``PromptCIR``
  with identical deterministic weights (cirbench's init with seed 0, relative-position bias tables drawn with
  std 0.5 so the masks matter, copied into the official model by ``load_state_dict(strict=True)``), at each
  ``--threads``: seconds, peak RSS, max |diff| of the outputs; bf16 (autocast, as ``cirbench run --precision
  bf16``) too where the CPU has native bf16. Without the anchor only cirbench's forward is measured.

Then the figures of ``harness_report.py``: the metric stack against FBCNN's own code and a NumPy + OpenCV
reference (``--goals metrics``, ``--fbcnn-utils``), the overhead of ``cirbench run`` around the forward
(``harness``), and released outputs scored through ``outputs:`` with each stage's share (``outputs``).
``--profile`` adds each forward's top operators (``torch.profiler``, from one more forward in the same process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import official_anchor  # noqa: E402 (benchmarks/ on sys.path first)

GOALS = {"speed": 3.0, "memory": 0.25, "diff": 1e-4, "bf16_speed": 8.0}  # issue 14
VARIANTS = {"official": "official (fp32)", "ours": "cirbench (fp32)", "ours-bf16": "cirbench (bf16 autocast)"}


def _shown(path) -> str:
    """A path as written in the JSON: under the home folder as ~/..., so results name no machine's layout."""
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + "/") else text


# --- this process ------------------------------------------------------------------------------------------
def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM, else ru_maxrss), MiB."""
    peak = _status_mib("VmHWM")
    if peak is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = kb / 1024 / (1024 if sys.platform == "darwin" else 1)
    return peak


def native_bf16() -> bool:
    """What cirbench's inference engine checks before it accepts ``--precision bf16`` on the CPU."""
    try:
        from cirbench.zoo.inference import cpu_has_native_bf16
    except Exception:  # noqa: BLE001 (the same test, should the engine not import)
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return cpu_has_native_bf16()


def machine() -> dict:
    import torch

    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in (platform.processor(), platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")},
            "native_bf16": native_bf16(), "python": platform.python_version()}


# --- child: matmul peak --------------------------------------------------------------------------------------
def _best_gflops(n: int, dtype, rounds: int) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def peak_child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    fast_bf16 = native_bf16()
    out = {"threads": torch.get_num_threads(), "fp32_gflops": _best_gflops(2048, torch.float32, 5),
           # Without native bf16 a 2048 product would take a minute: a small one shows the rate.
           "bf16_size": 2048 if fast_bf16 else 256}
    out["bf16_gflops"] = _best_gflops(out["bf16_size"], torch.bfloat16, 3 if fast_bf16 else 2)
    print("RESULT " + json.dumps(out))


# --- child: one forward ----------------------------------------------------------------------------------------
def forward_child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.variant == "official":
        model = official_anchor.build(args.official)
    else:
        from cirbench.archs import PromptCIR

        model = PromptCIR()
    model.load_state_dict(torch.load(args.weights, weights_only=True), strict=True)
    model.eval()
    x = torch.load(args.input, weights_only=True)
    rss_before = _status_mib("VmRSS")
    bf16 = args.variant == "ours-bf16"
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - t0)
    peak = peak_rss_mib()
    torch.save(y.float().contiguous(), args.output)
    result = {"variant": args.variant, "threads": torch.get_num_threads(), "seconds": times,
              "rss_before_forward_mib": rss_before, "peak_rss_mib": peak}
    if args.profile:  # one more forward, after the peak was read, so the profiler touches no figure
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile)
    print("RESULT " + json.dumps(result))


# --- parent ----------------------------------------------------------------------------------------------------
def _child(argv: list[str], label: str) -> dict:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"{label} failed:\n{proc.stderr[-4000:]}")
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])


def forward_flops(size: tuple[int, int], official: Path | None) -> dict:
    """FLOPs of one forward (FlopCounterMode on the meta device: shapes only, nothing computed).

    The official model is counted (its attention is plain matmuls). Without it, cirbench's autograd path is:
    on the meta device SDPA decomposes to the same matmuls, while the inference path's in-place GEMMs
    (``addmm_``) are not counted by FlopCounterMode.
    """
    import warnings

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if official is not None:
            model, what = official_anchor.build(official), "official model"
        else:
            from cirbench.archs import PromptCIR

            model, what = PromptCIR(), "cirbench's autograd path (official model absent)"
        x = torch.empty(1, 3, *size)
    with FlopCounterMode(display=False) as counter, torch.no_grad() if official is not None else torch.enable_grad():
        model(x)
    return {"flops": counter.get_total_flops(), "counted_on": what}


def write_inputs(tmp: Path, size: tuple[int, int]) -> None:
    import torch

    from cirbench.archs import PromptCIR

    torch.manual_seed(0)
    model = PromptCIR()
    with torch.no_grad():  # bias tables at init are ~0; make them (and thus the shift masks) matter
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    torch.save(model.state_dict(), tmp / "weights.pt")
    torch.save(torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)), tmp / "input.pt")


def speed(args, tmp: Path, official: Path | None, info: dict) -> dict:
    import torch

    h, w = args.size
    if h % 32 or w % 32:
        raise SystemExit(f"--size {h}x{w}: both sides must be multiples of 32 (PromptCIR's pad multiple)")
    out: dict = {"size": f"{h}x{w}", "repeat": args.repeat, "official_file": _shown(official) if official else None,
                 "peaks": {}, "runs": {}}
    for t in args.threads:
        out["peaks"][t] = _child(["_peak", "--threads", str(t)], f"matmul peak, {t} thread(s)")
    print("  FLOPs of the forward (meta device) ...", file=sys.stderr, flush=True)
    out.update(forward_flops(args.size, official))
    write_inputs(tmp, args.size)
    variants = (["official"] if official else []) + ["ours"] + (["ours-bf16"] if info["native_bf16"] else [])
    for t in args.threads:
        for v in variants:
            argv = ["_forward", "--variant", v, "--threads", str(t), "--repeat", str(args.repeat),
                    "--weights", str(tmp / "weights.pt"), "--input", str(tmp / "input.pt"),
                    "--output", str(tmp / f"out-{v}-{t}.pt")]
            if official:
                argv += ["--official", str(official)]
            if args.profile:
                argv += ["--profile", str(args.profile)]
            r = _child(argv, f"{VARIANTS[v]}, {h}x{w}, {t} thread(s)")
            r["best_seconds"] = min(r["seconds"])
            r["gflops"] = out["flops"] / r["best_seconds"] / 1e9
            peak = out["peaks"][t]["fp32_gflops" if v != "ours-bf16" else "bf16_gflops"]
            r["fraction_of_matmul_peak"] = r["gflops"] / peak
            out["runs"].setdefault(t, {})[v] = r
        runs = out["runs"][t]
        if "official" in runs:
            ref = torch.load(tmp / f"out-official-{t}.pt", weights_only=True)
            for v in runs:
                if v == "official":
                    continue
                r = runs[v]
                r["max_abs_diff"] = float((torch.load(tmp / f"out-{v}-{t}.pt", weights_only=True) - ref).abs().max())
                r["speedup"] = runs["official"]["best_seconds"] / r["best_seconds"]
                r["peak_memory_ratio"] = r["peak_rss_mib"] / runs["official"]["peak_rss_mib"]
    return out


def goals(res: dict) -> dict:
    sp = res.get("speed") or {}
    met = {}
    for t, runs in sp.get("runs", {}).items():
        ours, bf16 = runs.get("ours", {}), runs.get("ours-bf16", {})
        if "speedup" in ours:
            met[f"{t} thread(s): fp32 >= {GOALS['speed']:g}x official"] = ours["speedup"] >= GOALS["speed"]
            met[f"{t} thread(s): peak RSS <= 1/4 of official"] = ours["peak_memory_ratio"] <= GOALS["memory"]
            met[f"{t} thread(s): max |diff| <= 1e-4"] = ours["max_abs_diff"] <= GOALS["diff"]
        if "speedup" in bf16:
            key = f"{t} thread(s): bf16 >= {GOALS['bf16_speed']:g}x official fp32"
            met[key] = bf16["speedup"] >= GOALS["bf16_speed"]
    return met


def summary(res: dict) -> str:
    m = res["machine"]
    lines = [f"perf report: {m['cpu']}, {m['cpus']} cpus, torch {m['torch']} ({m['torch_cpu_capability']}), "
             f"load average {res['load_average'][0]:.2f} before, {res['load_average_after'][0]:.2f} after"]
    if res["load_average"][0] > 0.5:
        lines.append("  WARNING: the machine was not idle (load average above 0.5): timings are noisy, ratios less so")
    sp = res.get("speed")
    if sp:
        lines.append(f"PromptCIR forward {sp['size']}, {sp['flops'] / 1e12:.3f} TFLOP ({sp['counted_on']}, "
                     f"FlopCounterMode), best of {sp['repeat']} forward(s) per fresh process")
        if not sp["official_file"]:
            lines.append("  official anchor absent: cirbench alone is measured. " +
                         official_anchor.HOW_TO_GET.replace("\n", "\n  "))
        lines.append(f"  {'threads':>7}  {'variant':26s} {'seconds':>8} {'GFLOP/s':>8} {'of peak':>8} "
                     f"{'peak RSS':>10} {'max|diff|':>9} {'speed-up':>8} {'memory':>7}")
        for t, runs in sp["runs"].items():
            for v, r in runs.items():
                extra = ""
                if "speedup" in r:
                    extra = f" {r['max_abs_diff']:9.1e} {r['speedup']:7.2f}x {r['peak_memory_ratio']:7.3f}"
                lines.append(f"  {t:>7}  {VARIANTS[v]:26s} {r['best_seconds']:8.2f} {r['gflops']:8.1f} "
                             f"{100 * r['fraction_of_matmul_peak']:7.1f}% {r['peak_rss_mib']:7.0f} MiB{extra}")
        for t, p in sp["peaks"].items():
            lines.append(f"  matmul peak, {t} thread(s): fp32 {p['fp32_gflops']:.1f} GFLOP/s (2048^3), "
                         f"bf16 {p['bf16_gflops']:.2f} GFLOP/s ({p['bf16_size']}^3)")
        if not m["native_bf16"]:
            lines.append("  bf16: not measured. This CPU has no native bf16 (flags avx512_bf16 "
                         f"{'yes' if m['flags']['avx512_bf16'] else 'no'}, amx_bf16 "
                         f"{'yes' if m['flags']['amx_bf16'] else 'no'}; oneDNN reports none): bf16 would run at "
                         "the bf16 matmul rate above, and cirbench refuses --precision bf16 here.")
        lines.append("  speed-up and memory: official / cirbench time and cirbench / official peak RSS, same threads")
        for t, runs in sp["runs"].items():
            for v, r in runs.items():
                if "profile" in r:
                    lines.append(f"--- top operators: {VARIANTS[v]}, {t} thread(s), {sp['size']} ---\n{r['profile']}")
    if res.get("goals"):
        size = (res.get("speed") or {}).get("size")
        lines.append("goals (issue 14)" + ("" if size == "480x736" else f", set for 480x736 (this run: {size})") + ":")
        lines += [f"  {k}: {'met' if v else 'NOT met'}" for k, v in res["goals"].items()]
    import harness_report  # only here: the forward children stay free of OpenCV

    lines += harness_report.summary(res)
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _threads(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def child_main(argv: list[str]) -> int:
    """The measuring subprocesses: ``_peak`` (matmul rates) and ``_forward`` (one model, one thread count)."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["_forward", "_peak"])
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--variant", choices=sorted(VARIANTS))
    p.add_argument("--official")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--weights")
    p.add_argument("--input")
    p.add_argument("--output")
    p.add_argument("--profile", type=int, default=0)
    args = p.parse_args(argv)
    (forward_child if args.mode == "_forward" else peak_child)(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_forward", "_peak"):
        return child_main(argv)
    import harness_report

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="How to get the anchor:\n" + official_anchor.HOW_TO_GET)
    p.add_argument("--official", help=f"the official PromptCIR model.py (default ${official_anchor.ENV})")
    p.add_argument("--size", type=_size, default=(480, 736), help="forward input HxW, multiples of 32 (480x736)")
    p.add_argument("--threads", type=_threads, default=[1, 2], help="torch thread counts to measure (1,2)")
    p.add_argument("--repeat", type=int, default=1, help="forwards per process; the best is reported (1)")
    p.add_argument("--goals", default="speed,metrics,harness,outputs",
                   help="comma-separated subset of speed,metrics,harness,outputs (default all)")
    p.add_argument("--json", "--out", dest="json", help="write the results as JSON here (a file, or a folder)")
    p.add_argument("--profile", type=int, nargs="?", const=20, default=0, metavar="ROWS",
                   help="also print each forward's top operators (torch.profiler, one extra forward; 20 rows)")
    harness_report.add_arguments(p)
    args = p.parse_args(argv)

    aliases = {"1": "speed", "2": "metrics", "3": "harness"}  # issue 7's goal numbers
    which = {aliases.get(g.strip(), g.strip()) for g in args.goals.split(",") if g.strip()}
    official = official_anchor.find(args.official)
    if (args.official or os.environ.get(official_anchor.ENV)) and official is None:
        raise SystemExit(f"no official model.py at {args.official or os.environ[official_anchor.ENV]}\n\n"
                         + official_anchor.HOW_TO_GET)
    res: dict = {"command": " ".join([Path(sys.argv[0]).name, *map(_shown, argv)]),
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": os.getloadavg(),
                 "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="cirbench-perf-") as td:
        if "speed" in which:
            res["speed"] = speed(args, Path(td), official, res["machine"])
    res.update(harness_report.run(args, which))
    res["goals"] = goals(res)
    res["load_average_after"] = os.getloadavg()
    print(summary(res))
    if args.json:
        path = Path(args.json)
        if path.is_dir() or args.json.endswith("/"):
            path = path / f"promptcir-{res['speed']['size'] if 'speed' in res else 'harness'}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
