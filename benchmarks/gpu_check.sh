#!/usr/bin/env bash
# Issue 7, goal 5: full-size PromptCIR on the LIVE1 blind protocol on one GPU, fp32 vs bf16 (+channels_last).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # from the repository root, on the GPU machine
#
# Random weights (the official architecture, 34.8 M parameters) on a temporary card: the speed does not depend
# on the weights. LIVE1 is embedded in the package, so no data root is needed. Each precision is a separate
# `cirbench run` (its setting is recorded in run.json: "single" for fp32, "single+bf16" for bf16, and
# channels_last in the model's setting dict), so fp32 and bf16 numbers are never mixed. Goal: < 60 s for the
# protocol (29 images x 4 QFs) on one H100/H200.
#
# Environment: PYTHON (default python3; needs torch with CUDA, numpy, pillow, scikit-image, opencv, safetensors,
# tabulate, tqdm), QFS (default 10,20,30,40), CPU_JSON (a perf_report.py JSON with the CPU figures to print
# beside), CPU_SIZE_CHECK=1 to also time one 480x736 forward of ours on this machine's CPU (slow).
set -euo pipefail

OUT_DIR=${1:-${OUT:-results/perf/gpu}}
PY=${PYTHON:-python3}
QFS=${QFS:-10,20,30,40}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== device"
nvidia-smi -L || true
"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {p.name}, {p.total_memory / 2**30:.0f} GiB, "
      f"{p.multi_processor_count} SMs, bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF

echo "== temporary card: official PromptCIR architecture, random weights"
mkdir -p "$TMP/cards"
"$PY" - "$TMP/cards" <<'EOF'
import sys
from pathlib import Path

import torch

from cirbench.archs import PromptCIR
from cirbench.zoo.checkpoints import save_state_dict

cards = Path(sys.argv[1])
torch.manual_seed(0)
save_state_dict(PromptCIR().state_dict(), cards / "promptcir-random.safetensors")
(cards / "promptcir-random.toml").write_text('''name = "promptcir-random"
arch = "promptcir"
description = "official PromptCIR architecture, random weights (speed check only)"
channels = 3
pad_multiple = 32
pad_mode = "official32"

[weights]
path = "promptcir-random.safetensors"
''')
print("card written")
EOF
export CIRBENCH_MODELS="$TMP/cards"

run() {  # label, extra cirbench run args...
    local label=$1; shift
    echo "== $label"
    local start=$(date +%s.%N)
    "$PY" -m cirbench.cli run --protocol blind --models promptcir-random --datasets live1 --qf "$QFS" \
        --device cuda --out "$OUT_DIR/run-$label" "$@" >"$OUT_DIR/$label.log" 2>&1 \
        || { tail -20 "$OUT_DIR/$label.log"; return 1; }
    local end=$(date +%s.%N)
    tail -2 "$OUT_DIR/$label.log"
    echo "process wall (incl. start-up, model load, CUDA init): $(echo "$end - $start" | bc) s"
}

# A short warm-up run first (CUDA context, cuDNN/SDPA kernel choice), not counted.
"$PY" -m cirbench.cli run --protocol blind --models promptcir-random --datasets live1 --qf 10 --device cuda \
    --out "$TMP/warmup" >/dev/null 2>&1 || echo "(warm-up run failed; see the fp32 log)"

run fp32
run bf16 --precision bf16
run bf16-cl --precision bf16 --channels-last
run fp32-cl --channels-last

echo "== summary"
"$PY" - "$OUT_DIR" "${CPU_JSON:-}" <<'EOF'
import json
import statistics
import sys
from pathlib import Path

from cirbench.eval.records import iter_records

out, cpu_json = Path(sys.argv[1]), sys.argv[2]
rows, psnr = [], {}
for label in ("fp32", "bf16", "bf16-cl", "fp32-cl"):
    d = out / f"run-{label}"
    if not (d / "run.json").exists():
        print(f"{label}: no run")
        continue
    info = json.loads((d / "run.json").read_text())
    t = info["timing"]
    recs = [r for r in iter_records(d) if r["space"] == "y"]
    psnr[label] = {(r["image"], r["qf"]): r["psnr"] for r in recs}
    setting = next(iter(info["models"].values())).get("setting", {})
    print(f"{label:8s} {info['device']}: {len(recs)} images, wall {t['wall_seconds']:.1f} s, model "
          f"{t['model_seconds']:.1f} s ({t['model_seconds'] / max(len(recs), 1):.3f} s/image), "
          f"overhead {100 * (t['wall_seconds'] - t['model_seconds']) / t['wall_seconds']:.1f} %, "
          f"precision {setting.get('precision')}, channels_last {setting.get('channels_last')}, "
          f"goal < 60 s: {'met' if t['wall_seconds'] < 60 else 'NOT met'}")
for label in ("bf16", "bf16-cl", "fp32-cl"):
    if label in psnr and "fp32" in psnr:
        d = [abs(psnr[label][k] - v) for k, v in psnr["fp32"].items() if k in psnr[label]]
        print(f"|PSNR-Y({label}) - PSNR-Y(fp32)|: mean {statistics.mean(d):.4f} dB, max {max(d):.4f} dB")
print("CPU for comparison (issue 7, 2-core machine, torch 2.13 CPU): official PromptCIR 83 s and 10.9 GB per "
      "480x736 image -> about 116 x 83 s = 2.7 h for this protocol")
if cpu_json and Path(cpu_json).is_file():
    g1 = json.loads(Path(cpu_json).read_text()).get("goal1", {})
    for v, r in g1.get("variants", {}).items():
        print(f"CPU {g1['size']} {g1['threads']} thread(s) {v}: {r['median_seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MiB")
EOF

if [[ "${CPU_SIZE_CHECK:-0}" == 1 ]]; then
    echo "== CPU of this machine, ours only, 480x736"
    "$PY" benchmarks/perf_report.py --goals 1 --size 480x736 --threads "$(nproc)" --skip-naive \
        --out "$OUT_DIR/cpu-ours-480x736.json"
fi
