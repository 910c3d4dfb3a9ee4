#!/usr/bin/env bash
# Wheels the GPU image lacks (it has torch, transformers, accelerate, peft, pyarrow, pandas, ...),
# for Python 3.12 x86-64, into .whl/ (ignored by git; name it in the device call's carry).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
    -d .whl $(.venv/bin/python -c 'from importlib.metadata import version as v; print(*(f"{n}=={v(n)}" for n in ("datasets", "evaluate", "dill", "multiprocess")))') "$@"
ls .whl
