#!/usr/bin/env bash
# Issue 17, item 3: train the larger PromptCIR of configs/promptcir-gpu.toml on a lent GPU machine, time-boxed,
# with the CPU runs' code path (torchrun on every visible GPU, CUDA, bf16 autocast), and bring back what the CPU
# needs to evaluate it. Run from the repository root:
#
#   OUT=/some/folder MINUTES=8 bash benchmarks/gpu_train.sh
#
# $OUT receives final_ema.safetensors (the EMA weights), log.jsonl, curves.png, train_config.json and
# train.log. The training set must be on disk: $CIRBENCH_DATA (default ./shared/datasets, as the device
# tool copies it). Evaluate on the CPU afterwards with a card holding the config's [model] kwargs (copy
# models/promptcir-compact.toml and change name and kwargs):
#   cirbench run --protocol blind --models jpeg,path/to/promptcir-gpu.toml --weights OUT/final_ema.safetensors
set -euo pipefail

OUT=${OUT:-runs/gpu-train}
MINUTES=${MINUTES:-8}
PY=${PYTHON:-python3}
export CIRBENCH_DATA=${CIRBENCH_DATA:-$PWD/shared/datasets}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
NGPU=$(nvidia-smi -L | wc -l)
nvidia-smi -L | tee "$OUT/gpus.txt"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m cirbench train \
    --config configs/promptcir-gpu.toml --out "$OUT/run" --max-minutes "$MINUTES" 2>&1 | tee "$OUT/train.log"
# The checkpoint (optimiser state included) stays behind: the EMA weights and the logs are what come back.
for f in final_ema.safetensors log.jsonl curves.png train_config.json; do
    [ -f "$OUT/run/$f" ] && cp "$OUT/run/$f" "$OUT/"
done
rm -rf "$OUT/run"
ls -la "$OUT"
