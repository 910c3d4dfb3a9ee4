#!/usr/bin/env bash
# TextCNN and BiLSTM on the full IMDB, one GPU: writes $OUT/results/imdb-{textcnn,lstm}.{json,log}.
#
# Prepare on the CPU first (no GPU time is spent on tokenizer or word2vec training):
#   make imdb-word2vec                       # outputs/imdb-tokenizer + outputs/imdb-word2vec-300.npy
#   bash gpu/carry_textclf.sh                # -> .carry/textclf (IMDB train+test, tokenizer, fp16 vectors) + .whl
# Then on the GPU machine (carry .carry and .whl):
#   bash gpu/textclf.sh
# Each model trains for a few minutes on an H200; extra flags go to both runs.
set -euo pipefail
source "$(dirname "$0")/env.sh"
OUT="${OUT:-.}"
CARRY="${CARRY:-.carry/textclf}"
export TOKENIZERS_PARALLELISM=false
gpu_require "${WHEELS:-.whl}" $TRAINER_MODULES evaluate
gpu_banner
mkdir -p "$OUT/results"

for track in textcnn lstm; do
    RUN_COMMAND="bash gpu/textclf.sh${*:+ $*}  # make imdb-${track} on the carried data" "$PY" scripts/train_textclf.py "configs/imdb_${track}.yaml" \
        --dataset_dir "$CARRY/imdb" --tokenizer_name "$CARRY/tokenizer" --word2vec_cache "$CARRY/word2vec-300-fp16.npy" \
        --output_dir "/tmp/imdb-${track}" --results_dir "$OUT/results" --dataloader_num_workers 4 "$@"
done
