#!/usr/bin/env bash
# Prepared H200 run of the from-scratch tracks (issue 3): BERT and/or GPT-2 built from config,
# pretrained on IMDB train + unsupervised text, fine-tuned, tested once on the full test split.
#
#   bash gpu/scratch.sh bert      # -> $OUT/imdb-scratch-bert.json + .log  (about 10 minutes)
#   bash gpu/scratch.sh gpt       # -> $OUT/imdb-scratch-gpt.json  + .log  (about 10 minutes)
#   bash gpu/scratch.sh both      # both, one after the other (needs two 10-minute command limits)
#
# Each track is one 10-minute device command: with 15 minutes of device time in a session, run
# one track per session (or shorten both with SCRATCH_ARGS). Copy the returned files into
# results/ and commit them; the README table is generated from there.
#
# Before the device call, here:  bash gpu/scratch.sh pack
#   -> .carry/scratch/imdb (train/test/unsupervised Parquet, 41 MB, from ../shared/data/imdb),
#      .carry/scratch/tokenizer (outputs/imdb-tokenizer; `make imdb-tokenizer` first) and .whl/
#      (gpu/wheels.sh: datasets & co., which the GPU image lacks). Carry ".carry/scratch" and ".whl".
# The device reaches no hub or registry; missing Python modules are listed up front, before any
# GPU time is spent on training.
#
# Environment: OUT (results folder; default outputs/gpu-scratch), PY (python), IMDB_DIR, WHEELS,
# SCRATCH_ARGS (extra flags for both tracks), BERT_CONFIG / GPT_CONFIG (default configs/scratch_*.yaml),
# TOKENIZER (default .carry/scratch/tokenizer, else outputs/imdb-tokenizer, trained there if missing), WORK (checkpoint folder, default outputs).
# Dry run on a CPU machine (tiny configs, a few seconds of training):
#   OUT=/tmp/scratch-dry WORK=/tmp/scratch-dry/work TOKENIZER=/tmp/scratch-dry/tok PY=.venv/bin/python BERT_CONFIG=configs/scratch_bert_tiny.yaml GPT_CONFIG=configs/scratch_gpt_tiny.yaml \
#     IMDB_DIR=tests/fixtures/imdb SCRATCH_ARGS="--use_cpu true" bash gpu/scratch.sh both
set -euo pipefail
source "$(dirname "$0")/env.sh"
TRACKS=${1:-both}
OUT=${OUT:-outputs/gpu-scratch}
WHEELS=${WHEELS:-.whl}
BERT_CONFIG=${BERT_CONFIG:-configs/scratch_bert.yaml}
GPT_CONFIG=${GPT_CONFIG:-configs/scratch_gpt.yaml}
SCRATCH_ARGS=${SCRATCH_ARGS:-}
if [ -z "${TOKENIZER:-}" ]; then
  TOKENIZER=outputs/imdb-tokenizer
  [ -f .carry/scratch/tokenizer/tokenizer.json ] && TOKENIZER=.carry/scratch/tokenizer
fi
WORK=${WORK:-outputs}   # checkpoints go to $WORK/gpu-imdb-scratch-<track>
export TOKENIZERS_PARALLELISM=false  # datasets.map(num_proc=8) parallelises; no fork-after-threads
mkdir -p "$OUT"
case "$TRACKS" in
  bert|gpt|both) ;;
  pack)  # runs on the development machine, not on the device
    src=${IMDB_DIR:-../shared/data/imdb}
    [ -f outputs/imdb-tokenizer/tokenizer.json ] || { echo "error: outputs/imdb-tokenizer missing: run make imdb-tokenizer" >&2; exit 2; }
    mkdir -p .carry/scratch/imdb
    cp "$src"/train-*.parquet "$src"/test-*.parquet "$src"/unsupervised-*.parquet .carry/scratch/imdb/
    rm -rf .carry/scratch/tokenizer && cp -r outputs/imdb-tokenizer .carry/scratch/tokenizer
    grep -qxF '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
    bash gpu/wheels.sh
    du -sh .carry/scratch .whl
    exit 0;;
  *) echo "error: usage: bash gpu/scratch.sh bert|gpt|both|pack" >&2; exit 2;;
esac

# ---- data: the first IMDB Parquet folder that exists
if [ -z "${IMDB_DIR:-}" ]; then
  for d in .carry/scratch/imdb shared/data/imdb ../shared/data/imdb; do
    if [ -f "$d/train-00000-of-00001.parquet" ]; then IMDB_DIR=$d; break; fi
  done
fi
if [ -z "${IMDB_DIR:-}" ]; then echo "error: no IMDB Parquet folder (.carry/scratch/imdb, shared/data/imdb, ../shared/data/imdb); set IMDB_DIR" >&2; exit 2; fi
export IMDB_DIR
echo "IMDB from $IMDB_DIR"

# ---- Python modules: install what is missing from the carried wheels; stop here if any still is
# shellcheck disable=SC2086
gpu_require "$WHEELS" $TRAINER_MODULES
gpu_banner

# ---- tokenizer (shared by both tracks; not part of either track's time)
if [ ! -f "$TOKENIZER/tokenizer.json" ]; then
  echo "training the IMDB tokenizer -> $TOKENIZER"
  $PY scripts/train_tokenizer.py configs/imdb_tokenizer.yaml --output_dir "$TOKENIZER"
fi

run_track() {  # $1 = bert|gpt, $2 = config
  local name="imdb-scratch-$1"
  echo "==== $name ($2) $(date -u +%FT%TZ)"
  local start=$SECONDS
  # shellcheck disable=SC2086
  RUN_COMMAND="bash gpu/scratch.sh $1" $PY scripts/run_scratch.py "$2" \
    --tokenizer_name "$TOKENIZER" --dataset_dir "$IMDB_DIR" \
    --output_dir "$WORK/gpu-$name" --overwrite_output_dir true \
    --results_name "$name" --results_dir "$OUT" $SCRATCH_ARGS
  echo "==== $name finished in $((SECONDS - start)) s (whole process, start-up and data included)"
  $PY - "$OUT/$name.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
keys = ["test_accuracy", "validation_accuracy", "pretrain_tokens_per_second", "pretrain_tokens_per_second_after_warmup",
        "pretrain_seconds", "finetune_seconds", "pretrain_steps", "pretrain_stopped_by_time_budget", "pretrain_eval_perplexity"]
print({k: m.get(k) for k in keys})
EOF
}
if [ "$TRACKS" = bert ] || [ "$TRACKS" = both ]; then run_track bert "$BERT_CONFIG"; fi
if [ "$TRACKS" = gpt ] || [ "$TRACKS" = both ]; then run_track gpt "$GPT_CONFIG"; fi
ls -la "$OUT"
