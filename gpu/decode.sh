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
cd "$(dirname "$0")/.."
OUT="${OUT:-.}"
PY="${PY:-python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT/results"

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi: running on $(uname -m) CPU"
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__)'

RUN_COMMAND="bash gpu/decode.sh${*:+ $*}" "$PY" scripts/bench_decode.py \
    --preset "${PRESET:-chatglm2-6b}" --dtype bfloat16 \
    --prompt_tokens 32 --new_tokens "${NEW_TOKENS:-128}" --warmup 2 --repeats 3 \
    --modes generate static_compile compiled_loop \
    --results_name decode-chatglm2-6b --results_dir "$OUT/results" "$@"
