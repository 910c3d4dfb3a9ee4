#!/usr/bin/env python
"""How many users can the chat server serve at once? Measured the way users see it: the real
``scripts/serve.py`` on 127.0.0.1, driven by the official ``openai`` client at 1, 4, 16 and 64 concurrent
clients (``--peer llama.cpp``: the same load against llama-cpp-python's server, in the same run).

    python scripts/bench_serve.py --model_name_or_path packaged:smollm2     # make bench-serve MODEL=packaged:smollm2

What is measured and how: :mod:`imdb_llm.serve.bench`.
"""

from __future__ import annotations

from imdb_llm.cli import parse_args, run_main
from imdb_llm.serve.bench import BenchServeArguments, run_bench


@run_main
def main(argv=None):
    (args, config) = parse_args([BenchServeArguments], argv)
    run_bench(args, config)


if __name__ == "__main__":
    main()
