# Sourced by every gpu/*.sh so that the device image is set up one way (not executable on its own).
#
#   source "$(dirname "$0")/env.sh"        # cd to the repo root, offline HF, src/ on PYTHONPATH, $PY
#   gpu_require WHEEL_DIR module...         # import each module, else install WHEEL_DIR/*.whl and retry
#   gpu_banner                              # GPU, torch and transformers versions into the log
#
# The GPU image has torch + transformers (+ accelerate, peft, pyarrow, pandas) but no datasets,
# evaluate or bitsandbytes, and no network. Carried wheels go into $GPU_SITE with --no-deps: pip then
# never tries to resolve what the image already has (it cannot reach an index to do so anyway).
# A folder that already holds installed packages (gpu/carry_bnb.sh's .carry/bnb) goes on PYTHONPATH
# with gpu_use_site.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-${PYTHON:-python3}}
GPU_SITE=${GPU_SITE:-/tmp/site}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true

# What scripts/train_textclf.py, run_scratch.py and finetune_classifier.py import.
TRAINER_MODULES="torch transformers accelerate datasets pyarrow tokenizers safetensors yaml sklearn matplotlib numpy"

gpu_use_site() {  # DIR: put already-installed packages on the path, ahead of the image's
  [[ -d "$1" ]] && export PYTHONPATH="$1:$PYTHONPATH"
  return 0
}

gpu_missing() {  # module...: print the ones that do not import
  local m
  for m in "$@"; do "$PY" -c "import $m" 2>/dev/null || printf '%s ' "$m"; done
}

gpu_require() {  # WHEEL_DIR module...: fail before any GPU time is spent if a module stays missing
  local wheels=$1; shift
  local miss
  miss=$(gpu_missing "$@")
  if [[ -n "$miss" ]] && compgen -G "$wheels/*.whl" >/dev/null; then
    echo "installing carried wheels from $wheels for: $miss"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$GPU_SITE" "$wheels"/*.whl
    gpu_use_site "$GPU_SITE"
    miss=$(gpu_missing "$@")
  fi
  if [[ -n "$miss" ]]; then
    echo "error: missing Python modules: ${miss% }; carry their wheels in $wheels (gpu/README.md)" >&2
    exit 2
  fi
}

gpu_banner() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: $(uname -m) CPU"
  "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__)'
}
