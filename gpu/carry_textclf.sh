#!/usr/bin/env bash
# Pack what gpu/textclf.sh needs into .carry/textclf (~40 MB) and the missing wheels into .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
IMDB_DIR="${IMDB_DIR:-../shared/data/imdb}"
dst=.carry/textclf
mkdir -p "$dst/imdb"
cp "$IMDB_DIR"/train-*.parquet "$IMDB_DIR"/test-*.parquet "$dst/imdb/"
rm -rf "$dst/tokenizer" && cp -r outputs/imdb-tokenizer "$dst/tokenizer"
# fp16 halves the 30k x 300 table (36 MB -> 18 MB); it is cast back to fp32 when copied in.
.venv/bin/python -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]).astype(np.float16))" \
    outputs/imdb-word2vec-300.npy "$dst/word2vec-300-fp16.npy"
bash gpu/wheels.sh
grep -qxF '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
du -sh "$dst" .whl
