#!/usr/bin/env bash
# Batch-1 bf16 decode speed of a ChatGLM2-6B-shaped model (random weights) on ONE GPU:
# textbook generate vs static KV cache + torch.compile (CUDA graphs) vs a compiled decode loop.
#
#   bash gpu/decode.sh                 # on the H200: writes $OUT/results/decode-chatglm2-6b.json + .log
#   PRESET=tiny bash gpu/decode.sh --device cpu --dtype float32 --compile_backend eager --new_tokens 4   # CPU dry run
#
# Needs only torch + transformers (no datasets/evaluate/bitsandbytes, no hub access: the model is
# built from its config). About 5 minutes on an H200, most of it compiling; extra flags go to
# scripts/bench_decode.py. Copy the result into results/ of the repository afterwards.
set -euo pipefail
source "$(dirname "$0")/env.sh"
OUT="${OUT:-.}"
export TOKENIZERS_PARALLELISM=false
gpu_require "${WHEELS:-.whl}" torch transformers
gpu_banner
mkdir -p "$OUT/results"

RUN_COMMAND="bash gpu/decode.sh${*:+ $*}" "$PY" scripts/bench_decode.py \
    --preset "${PRESET:-chatglm2-6b}" --dtype bfloat16 \
    --prompt_tokens 32 --new_tokens "${NEW_TOKENS:-128}" --warmup 2 --repeats 3 \
    --modes generate static_compile compiled_loop \
    --results_name decode-chatglm2-6b --results_dir "$OUT/results" "$@"
