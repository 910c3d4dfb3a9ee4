#!/usr/bin/env bash
# bitsandbytes for the GPU image (Python 3.12, CUDA 13): the wheel holds one .so per CUDA version
# (~60 MB); keep only CUDA 13.x and the CPU build (~9 MB) in .carry/bnb, put it on PYTHONPATH there.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("bitsandbytes"))')
tmp=$(mktemp -d)
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp" "bitsandbytes==$ver"
rm -rf .carry/bnb && mkdir -p .carry/bnb
.venv/bin/python -m pip install -q --no-deps --no-compile --target .carry/bnb "$tmp"/bitsandbytes-*.whl
find .carry/bnb -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda13*.so' ! -name 'libbitsandbytes_cpu*.so' -delete
grep -qxF '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf "$tmp"; du -sh .carry/bnb; ls .carry/bnb/bitsandbytes/*.so
