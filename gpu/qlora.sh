#!/usr/bin/env bash
# QLoRA speed + peak memory on the H200 for a ChatGLM2-6B-shaped model (random weights, NF4, LoRA r=8
# on all linear layers, batch 4 x 1024) -> $OUT/results/qlora-chatglm2-6b-speed.{json,log}.
# Target: >= 6,500 tokens/s at <= 10 GiB peak (textbook peft+bitsandbytes loop: 4,332 tok/s at 9.77 GiB).
# Run from the repo root on the device machine:   bash gpu/qlora.sh
# The machine has torch + transformers but no bitsandbytes/peft and no network: carry wheels in .whl/.
set -euo pipefail
source "$(dirname "$0")/env.sh"
OUT=${OUT:-out}
mkdir -p "$OUT/results"
# bitsandbytes trimmed to its CUDA 13 build by gpu/carry_bnb.sh (carry .carry/bnb); peft is in the image.
gpu_use_site "$PWD/.carry/bnb"
gpu_require "${WHEELS:-.whl}" torch transformers bitsandbytes peft
gpu_banner
export RUN_COMMAND="bash gpu/qlora.sh"
# Smoke test first (seconds): catches a broken environment before the real build.
$PY scripts/bench_qlora.py --tiny --steps 1 --warmup_steps 0 --seq_len 64 --batch_size 1
# Headline: SDPA + chunked CE + checkpointing on 20 of 28 layers (8 keep activations), then the textbook loop
# on a fresh model in the same process for the comparison. CHECKPOINT_LAYERS trades memory for speed.
$PY scripts/bench_qlora.py --variants fast,textbook --checkpoint_layers "${CHECKPOINT_LAYERS:-20}" \
    --steps "${STEPS:-8}" --warmup_steps 2 --results_name qlora-chatglm2-6b-speed --results_dir "$OUT/results" ${BENCH_ARGS:-}
cat "$OUT/results/qlora-chatglm2-6b-speed.json"
