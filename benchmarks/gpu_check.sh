#!/usr/bin/env bash
# GPU checks (issue 14), one script: run from the repository root on a machine with NVIDIA GPUs.
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh        # default OUT: results/perf/gpu
#
# 1. `cirbench run` under torchrun on every visible GPU: jpeg + promptcir-compact on Classic5 and LIVE1 at QF 10 and
#    40, fp32, then the same in bf16 (autocast); mean PSNR-Y per model, dataset and QF of both, and their difference.
# 2. The full-size PromptCIR (official architecture, random weights: speed and memory do not depend on them) on every
#    LIVE1 image at QF 10, whole-image forwards on one GPU, fp32 and bf16: seconds per image, peak GPU memory
#    (torch.cuda.max_memory_allocated), and the largest bf16 - fp32 output difference.
# 3. The metric stack on the GPU (issue 24): every LIVE1 image at QF 10 scored in all colour spaces with the batched
#    tensor path on cuda and with the CPU path: the largest difference (must be <= 1e-6) and ms per image of each.
# Logs, run folders and gpu-summary.json go under $OUT. The datasets must be on disk (a GPU machine may have no
# network): $CIRBENCH_DATA, or the user cache filled by `cirbench datasets fetch classic5 live1`. Environment:
# PYTHON (default python3, with torch+CUDA and cirbench's dependencies), QFS (default 10,40).
set -euo pipefail

OUT=${OUT:-results/perf/gpu}
PY=${PYTHON:-python3}
QFS=${QFS:-10,40}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CIRBENCH_OFFLINE=1
mkdir -p "$OUT"
NGPU=$(nvidia-smi -L | wc -l)
nvidia-smi -L | tee "$OUT/gpus.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())" \
    | tee -a "$OUT/gpus.txt"

for precision in fp32 bf16; do
    echo "== 1. torchrun on $NGPU GPU(s), $precision"
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m cirbench run \
        --models jpeg,promptcir-compact --datasets classic5,live1 --qf "$QFS" --device cuda --precision "$precision" \
        --out "$OUT/run-torchrun-$precision" 2>&1 | tee "$OUT/run-torchrun-$precision.log" \
        || echo "step 1 ($precision) FAILED: see $OUT/run-torchrun-$precision.log (step 2 runs anyway)"
done

echo "== 2. full-size PromptCIR on LIVE1, one GPU, fp32 and bf16"
"$PY" - "$OUT" <<'EOF'
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from cirbench import jpeg
from cirbench.archs import PromptCIR
from cirbench.eval.datasets import get_dataset
from cirbench.records import iter_records
from cirbench.zoo.inference import pad_image

out = Path(sys.argv[1])
summary = {"device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "runs": {}}
for precision in ("fp32", "bf16"):  # mean PSNR-Y of step 1, per model / dataset / QF
    psnr = defaultdict(list)
    try:
        for r in iter_records(out / f"run-torchrun-{precision}"):
            if r.get("space") == "y":
                psnr[f"{r['model']} {r['dataset']} qf{r['qf']}"].append(r["psnr"])
    except Exception as exc:  # step 2 still runs; the log of step 1 says more
        summary[f"records_{precision}"] = f"{type(exc).__name__}: {exc}"
    summary["runs"][precision] = {k: statistics.mean(v) for k, v in sorted(psnr.items())}
summary["psnr_bf16_minus_fp32"] = {k: summary["runs"]["bf16"].get(k, float("nan")) - v
                                   for k, v in summary["runs"]["fp32"].items()}

torch.manual_seed(0)
net = PromptCIR().cuda().eval()
ds = get_dataset("live1")
images = [torch.from_numpy(jpeg.compress(ds.load(p), 10).pixels).permute(2, 0, 1)[None].float() / 255 for _, p in ds]
full, first_out = {}, {}
for precision in ("fp32", "bf16"):
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i, img in enumerate(images):
        x = pad_image(img.cuda(), net.pad_multiple, "reflect")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = net(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if i == 0:
            first_out[precision] = y.float()
    full[precision] = {"images": len(times), "first_s": times[0], "median_s": statistics.median(times[1:] or times),
                       "total_s": sum(times), "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}
full["bf16_vs_fp32_max_abs_diff_first_image"] = float((first_out["bf16"] - first_out["fp32"]).abs().max())
summary["promptcir_full_live1_qf10"] = full

from cirbench.metrics import image_metrics  # noqa: E402  (3. the metric stack on the GPU vs the CPU)

pairs = [(ds.load(p), None) for _, p in ds]
pairs = [(gt, jpeg.compress(gt, 10).pixels) for gt, _ in pairs]
diff, t_gpu, t_cpu = 0.0, [], []
for gt, jp in pairs:
    t0 = time.perf_counter()
    gpu = image_metrics(gt, jp, device="cuda")
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    cpu = image_metrics(gt, jp)
    t_gpu.append(t1 - t0)
    t_cpu.append(time.perf_counter() - t1)
    diff = max(diff, max(abs(gpu[s][m] - cpu[s][m]) for s in cpu for m in cpu[s]))
summary["metrics_cuda_vs_cpu_live1_qf10"] = {"images": len(pairs), "max_abs_diff": diff, "equal_1e-6": diff <= 1e-6,
                                             "gpu_ms_median": 1e3 * statistics.median(t_gpu[1:] or t_gpu),
                                             "cpu_ms_median": 1e3 * statistics.median(t_cpu)}
(out / "gpu-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
echo "wrote $OUT/gpu-summary.json"
