#!/usr/bin/env python
"""The server under faults, measured (issue 53): bad requests, clients that leave, one long prompt.

    python scripts/bench_serve_faults.py --model packaged:smollm2     # make bench-serve-faults

Starts ``scripts/serve.py`` (the real CLI) on 127.0.0.1 with an API key, runs the probes of
:mod:`imdb_llm.serve.faults` against it, stops it, and writes ``results/serve-faults-<device>.json``:
bad requests tried and how they were answered, how long a job outlives its client, the longest
gap in a running stream while a prompt of thousands of tokens is prefilled, and streams dropped
mid-answer. Bounded: every probe has a time limit, and the server is stopped whatever happens.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.results import capture_log, trim_log, write_result
from imdb_llm.serve import faults
from imdb_llm.serve.launch import ROOT, free_port, running_server, serve_command

SERVED_NAME = "faults"


@dataclass
class FaultArguments:
    model_name_or_path: str = field(default="packaged:smollm2", metadata={"aliases": ["--model"], "help": "What serve.py loads: model folder, .gguf or packaged:smollm2."})
    prefill_chunk: int | None = field(default=None, metadata={"help": "serve.py --prefill_chunk (tokens per prefill chunk); default: the server's."})
    server_args: str = field(default="", metadata={"help": "Extra serve.py flags."})
    long_prompt_tokens: int = field(default=4500, metadata={"help": "Tokens of the long prompt that arrives while a stream runs."})
    orphan_client_timeout_s: float = field(default=3.0, metadata={"help": "The abandoning client gives up after this many seconds."})
    orphan_max_tokens: int = field(default=2000, metadata={"help": "max_tokens of the abandoned non-streaming request."})
    startup_timeout_s: float = field(default=300.0, metadata={"help": "Give up when the server is not healthy after this many seconds."})
    results_name: str = field(default="serve-faults-cpu", metadata={"help": "Result file name."})
    results_dir: str = field(default="results", metadata={"help": "Where the result JSON + log go."})

    def __post_init__(self):
        if self.long_prompt_tokens < 100 or self.orphan_client_timeout_s <= 0 or self.orphan_max_tokens < 1:
            raise UserError("--long_prompt_tokens must be >= 100, --orphan_client_timeout_s > 0 and --orphan_max_tokens >= 1")
        if self.prefill_chunk is not None and self.prefill_chunk < 0:
            raise UserError("--prefill_chunk must be >= 0")


def long_text(model: str, tokens: int) -> tuple[str, int]:
    """IMDB reviews joined until the model's tokenizer counts at least ``tokens``: ``(text, tokens)``."""
    import pyarrow.parquet as pq

    from imdb_llm.llm.loading import load_tokenizer

    tokenizer = load_tokenizer(model)
    reviews = pq.read_table(ROOT / "data" / "imdb_sample" / "test-00000-of-00001.parquet", columns=["text"]).column("text").to_pylist()
    text, n = "Summarise these reviews in one sentence.\n", 0
    for review in reviews * 10:
        text += review.replace("<br />", " ") + "\n"
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n >= tokens:
            return text, n
    raise UserError(f"the sample reviews hold fewer than {tokens} tokens")


@run_main
def main(argv=None):
    (args, config) = parse_args([FaultArguments], argv)
    with capture_log(None) as log:
        return _main(args, config, log)


def _main(args: FaultArguments, config: dict, log) -> dict:
    import httpx

    text, n_long = long_text(args.model_name_or_path, args.long_prompt_tokens)
    port, key = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    chunk = ["--prefill_chunk", str(args.prefill_chunk)] if args.prefill_chunk is not None else []
    cmd = serve_command(args.model_name_or_path, port, SERVED_NAME, args.orphan_max_tokens, "--api_key", key, *chunk, *args.server_args.split())
    began = time.monotonic()
    health = {"Authorization": f"Bearer {key}"}
    with running_server(cmd, url, args.startup_timeout_s, headers=health) as (_proc, server_log):
        context = httpx.get(url + "/health", headers=health, timeout=10).json()["context_length"]
        print(f"server healthy after {time.monotonic() - began:.0f} s; context {context} tokens; long prompt {n_long} tokens", flush=True)
        bad = faults.bad_requests(url, key, SERVED_NAME, context)
        for row in bad["cases"]:
            flag = "" if row["status"] == row["expected"] and row["openai_body"] else "   <-- unexpected"
            print(f"  {row['status']} (expected {row['expected']}) {row['name']}: {row['message']}{flag}")
        orphan_decode = faults.orphan_seconds(url, key, SERVED_NAME, "Write a very long story.", args.orphan_max_tokens, args.orphan_client_timeout_s)
        orphan_prefill = faults.orphan_seconds(url, key, SERVED_NAME, text, 16, args.orphan_client_timeout_s)
        print(f"orphaned job running after its client left: {orphan_decode} s (decoding), {orphan_prefill} s (long prefill)", flush=True)
        gap = faults.stream_gap_during_prefill(url, key, SERVED_NAME, text)
        print(f"stream gaps: {json.dumps(gap)}", flush=True)
        dropped = faults.abandoned_streams(url, key, SERVED_NAME)
        print(f"streams: {json.dumps(dropped)}", flush=True)
        stats = httpx.get(url + "/health", headers=health, timeout=10).json().get("stats", {})
        server_text = trim_log(server_log.read_text(errors="replace"))
    print("--- server log (tail) ---\n" + "\n".join(server_text.splitlines()[-30:]))
    metrics = {k: v for k, v in bad.items() if k != "cases"}
    metrics.update({"orphan_running_seconds": max(orphan_decode, orphan_prefill), "orphan_running_seconds_decoding": orphan_decode,
                    "orphan_running_seconds_prefill": orphan_prefill, "long_prompt_tokens": n_long, **gap, **dropped,
                    "engine_prefill_chunks": stats.get("prefill_chunks")})
    write_result(args.results_name, metrics, headline="faults", config=config, log_text=log.getvalue(), results_dir=args.results_dir,
                 extra={"cases": bad["cases"]})
    return metrics


if __name__ == "__main__":
    main()
