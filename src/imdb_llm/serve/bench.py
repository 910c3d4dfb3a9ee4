"""How many users can the chat server serve at once? Measured the way users see it (``make bench-serve``;
``scripts/bench_serve.py`` parses the arguments and calls :func:`run_bench`).

Starts ``scripts/serve.py`` (the real CLI, so this measures what ``make chatglm-serve`` runs) on
127.0.0.1 only, then drives it with the official ``openai`` client: 1, 4, 16 and 64 concurrent
clients, each a closed loop (send a streaming request, read it to the end, send the next) until the
level's request budget or time limit is used up. Prompts are IMDB reviews of varied length from
``data/imdb_sample``, greedy, ``max_tokens`` 32.

Per level it records aggregate completion tokens/s (all tokens received / wall time of the level),
p50/p95 latency and time to first token, failed requests and incomplete streams (a stream is
complete when it carried a finish reason and the usage chunk before ``[DONE]``). Writes
``results/serve-<model>-<device>.json`` + ``.log`` through ``imdb_llm.results.write_result``.

With ``--peer llama.cpp`` the same levels then run against llama-cpp-python's server (``python -m
llama_cpp.server``) on the same GGUF file and thread count, so the ratio of the two is measured on
one machine in one run (issue 34); its figures are the ``peer_*`` metrics.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path

from imdb_llm.cli import UserError
from imdb_llm.results import capture_log, trim_log, write_result
from imdb_llm.serve.launch import ROOT, free_port, serve_command, start, stop, wait_healthy

SERVED_NAME = "bench"


@dataclass
class BenchServeArguments:
    model_name_or_path: str = field(default="packaged:smollm2", metadata={"aliases": ["--model"], "help": "What serve.py loads: model folder, .gguf, packaged:smollm2 or hub id."})
    adapter: str | None = field(default=None, metadata={"help": "Optional LoRA adapter folder, passed to serve.py --adapter."})
    device: str = field(default="auto", metadata={"help": "cuda, cpu or auto (cuda when available); names the result file too."})
    clients: list[int] = field(default_factory=lambda: [1, 4, 16, 64], metadata={"help": "Concurrency levels: this many clients send requests at the same time."})
    max_tokens: int = field(default=32, metadata={"help": "max_tokens of every request (greedy, temperature 0)."})
    rounds: int = field(default=3, metadata={"help": "Requests per client per level (at least --min_requests per level)."})
    min_requests: int = field(default=8, metadata={"help": "Smallest number of requests of a level, so p50/p95 of 1 client mean something."})
    level_timeout_s: float = field(default=120.0, metadata={"help": "Stop sending new requests of a level after this many seconds (running ones finish)."})
    request_timeout_s: float = field(default=300.0, metadata={"help": "A request taking longer than this counts as failed."})
    startup_timeout_s: float = field(default=300.0, metadata={"help": "Give up when the server is not healthy after this many seconds."})
    server_dtype: str | None = field(default=None, metadata={"help": "serve.py --dtype (auto, bfloat16, float16, float32). bfloat16 is much faster on CPUs with native bf16."})
    server_threads: int | None = field(default=None, metadata={"help": "serve.py --threads: torch threads of the server (CPU). 1 is faster when other jobs share the cores."})
    server_args: str = field(default="", metadata={"help": "Extra serve.py flags, e.g. '--max_running 32 --batch_window_ms 5'."})
    peer: str | None = field(default=None, metadata={"help": "llama.cpp: run the same client load, in the same run, against llama-cpp-python's OpenAI server on the same .gguf "
                                                            "with --server_threads threads, and record both sides and their ratio (needs the optional extra: make peer-setup)."})
    results_name: str | None = field(default=None, metadata={"help": "Result file name. Default: serve-<model>-<device>."})
    results_dir: str = field(default="results", metadata={"help": "Where the result JSON + log go."})


def default_name(model: str, device: str) -> str:
    short = Path(model.rstrip("/")).name.removesuffix(".gguf").removeprefix("packaged:")
    return "serve-" + re.sub(r"[^A-Za-z0-9._-]+", "-", short).strip("-") + f"-{device}"


def imdb_prompts(n: int = 200) -> list[list[dict]]:
    """Chat requests made of IMDB reviews cut to 8-60 words: varied prompt lengths, like real users."""
    import pyarrow.parquet as pq

    texts = pq.read_table(ROOT / "data" / "imdb_sample" / "test-00000-of-00001.parquet", columns=["text"]).column("text").to_pylist()
    prompts = []
    for i, text in enumerate(texts[:n]):
        words = text.replace("<br />", " ").split()[: 8 + (i * 13) % 53]
        prompts.append([{"role": "user", "content": "In one sentence, is this movie review positive or negative? " + " ".join(words)}])
    return prompts


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def server_command(args, port: int) -> list[str]:
    """``scripts/serve.py`` as the benchmark runs it: this model, its adapter, threads and dtype."""
    flags = [*(["--device", args.device] if args.device != "auto" else []), *(["--adapter", args.adapter] if args.adapter else []),
             *(["--threads", str(args.server_threads)] if args.server_threads else []), *(["--dtype", args.server_dtype] if args.server_dtype else [])]
    return serve_command(args.model_name_or_path, port, SERVED_NAME, max(args.max_tokens, 1), *flags, *shlex.split(args.server_args))


PEER_INSTALL = ("pip install -e '.[peer]' (make peer-setup): llama-cpp-python builds from source, about 10 minutes on 2 cores; "
                "see docs/serving.md")


def peer_command(args, port: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server on the same GGUF file, thread count and max_tokens."""
    import importlib.util

    from imdb_llm.weights import resolve_model

    if args.peer != "llama.cpp":
        raise UserError(f"--peer {args.peer!r}: the one peer is llama.cpp")
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("pydantic_settings") is None:
        raise UserError(f"--peer llama.cpp needs llama-cpp-python with its server extra: {PEER_INSTALL}")
    folder, gguf = resolve_model(args.model_name_or_path)
    if not gguf:
        raise UserError(f"--peer llama.cpp runs a .gguf file, and {args.model_name_or_path} is not one (packaged:smollm2 is)")
    threads = str(args.server_threads or os.cpu_count())
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(Path(folder) / gguf), "--model_alias", SERVED_NAME,
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", threads, "--n_threads_batch", threads, "--n_ctx", "2048",
            "--interrupt_requests", "false"]  # its default cancels a running stream when the next request arrives


async def run_level(base_url: str, clients: int, n_requests: int, prompts, args, count_tokens=None) -> dict:
    """``clients`` closed-loop users share a budget of ``n_requests`` requests. Completion tokens come
    from the usage chunk; ``count_tokens(text)`` counts them instead for a server that sends none
    (llama-cpp-python's), by encoding the streamed text with the model's tokenizer."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0, timeout=args.request_timeout_s)
    records: list[dict] = []
    issued = 0
    start = time.perf_counter()

    def take() -> int | None:
        nonlocal issued
        if issued >= n_requests or time.perf_counter() - start > args.level_timeout_s:
            return None
        issued += 1
        return issued - 1

    async def user() -> None:
        while (i := take()) is not None:
            t0 = time.perf_counter()
            rec = {"ttft": None, "finish": None, "tokens": 0, "error": None, "complete": False}
            try:
                stream = await client.chat.completions.create(
                    model=SERVED_NAME, messages=prompts[i % len(prompts)], max_tokens=args.max_tokens, temperature=0,
                    stream=True, stream_options={"include_usage": True},
                )
                usage, text = None, []
                async for chunk in stream:
                    if chunk.choices:
                        choice = chunk.choices[0]
                        if choice.delta.content:
                            text.append(choice.delta.content)
                        if choice.delta.content and rec["ttft"] is None:
                            rec["ttft"] = time.perf_counter() - t0
                        rec["finish"] = choice.finish_reason or rec["finish"]
                    if chunk.usage is not None:
                        usage = chunk.usage
                counted = usage is None and count_tokens is not None
                rec["complete"] = rec["finish"] in ("stop", "length") and (usage is not None or counted)
                rec["tokens"] = usage.completion_tokens if usage is not None else count_tokens("".join(text)) if counted else 0
            except Exception as exc:  # counted, never fatal: the point is to see failures
                rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            rec["end"] = time.perf_counter()
            rec["latency"] = rec["end"] - t0
            records.append(rec)

    try:
        await asyncio.gather(*(user() for _ in range(clients)))
    finally:
        await client.close()
    wall = max((r["end"] for r in records), default=start) - start
    ok = [r for r in records if r["error"] is None]
    tokens = sum(r["tokens"] for r in ok)
    errors = sorted({r["error"] for r in records if r["error"]})
    return {
        "clients": clients,
        "requests": len(records),
        "failed_requests": len(records) - len(ok),
        "incomplete_streams": sum(1 for r in ok if not r["complete"]),
        "completion_tokens": tokens,
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(tokens / wall, 2) if wall > 0 else None,
        "latency_p50_s": percentile([r["latency"] for r in ok], 50),
        "latency_p95_s": percentile([r["latency"] for r in ok], 95),
        "ttft_p50_s": percentile([r["ttft"] for r in ok if r["ttft"] is not None], 50),
        "ttft_p95_s": percentile([r["ttft"] for r in ok if r["ttft"] is not None], 95),
        "mean_tokens_per_request": round(tokens / len(ok), 1) if ok else None,
        "errors": errors[:5],
    }


def engine_stats(url: str) -> dict:
    """The server's engine counters (decode steps, prefills, prefix-cache hits) from /health."""
    import httpx

    return httpx.get(url + "/health", timeout=10).json().get("stats", {})


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def level_metrics(levels: list[dict]) -> dict:
    """The result's metrics: tokens/s per load level, the best, the speed-ups over one client, failures."""
    by_clients = {lv["clients"]: lv for lv in levels}
    metrics: dict = {}
    for lv in levels:
        metrics[f"clients_{lv['clients']}_tokens_per_second"] = lv["tokens_per_second"]
    best = max(levels, key=lambda lv: lv["tokens_per_second"] or 0)
    metrics["tokens_per_second"] = best["tokens_per_second"]  # the headline: the best aggregate
    metrics["best_clients"] = best["clients"]
    if 1 in by_clients and by_clients[1]["tokens_per_second"]:
        for c in by_clients:
            if c != 1 and by_clients[c]["tokens_per_second"]:
                metrics[f"speedup_{c}_vs_1"] = round(by_clients[c]["tokens_per_second"] / by_clients[1]["tokens_per_second"], 2)
    metrics["failed_requests"] = sum(lv["failed_requests"] for lv in levels)
    metrics["incomplete_streams"] = sum(lv["incomplete_streams"] for lv in levels)
    metrics["requests"] = sum(lv["requests"] for lv in levels)
    return metrics


def measure_server(label: str, cmd: list[str], url: str, args, prompts, *, health: str = "/health", stats: bool = True,
                   count_tokens=None) -> tuple[list[dict], float]:
    """Start one server, warm it up, run every client level against it, stop it: ``(levels, seconds)``."""
    levels: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        server_log = Path(tmp) / "server.log"
        with open(server_log, "w") as log_file:
            proc = start(cmd, log_file)
        began = time.perf_counter()
        try:
            print(f"{label}: {shlex.join(cmd)}")
            print(f"load average before: {os.getloadavg()[0]:.2f} (1 min, {os.cpu_count()} cores)")
            wait_healthy(proc, url, args.startup_timeout_s, server_log, health)
            print(f"{label} healthy after {time.perf_counter() - began:.1f} s; warming up")
            asyncio.run(run_level(url, 1, 2, prompts, args, count_tokens))  # first requests pay one-off costs
            print(f"{'clients':>7} {'requests':>8} {'failed':>6} {'incompl':>7} {'tok/s':>8} {'lat p50':>8} {'lat p95':>8} {'ttft p50':>8} {'ttft p95':>8}")
            for clients in args.clients:
                before = engine_stats(url) if stats else {}
                level = asyncio.run(run_level(url, clients, max(args.min_requests, args.rounds * clients), prompts, args, count_tokens))
                if stats:
                    after = engine_stats(url)
                    level["engine"] = {k: after[k] - before.get(k, 0) for k in ("steps", "prefills", "prefix_hits") if k in after}
                    level["engine"]["peak_running"] = after.get("peak_running")
                levels.append(level)
                print(f"{clients:>7} {level['requests']:>8} {level['failed_requests']:>6} {level['incomplete_streams']:>7} {fmt(level['tokens_per_second'], 1):>8} "
                      f"{fmt(level['latency_p50_s'])}s {fmt(level['latency_p95_s'])}s {fmt(level['ttft_p50_s'])}s {fmt(level['ttft_p95_s'])}s", flush=True)
                if stats:
                    print(f"        engine: {level['engine']}")
                for err in level["errors"]:
                    print(f"        error: {err}")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            stop(proc)
        seconds = time.perf_counter() - began
        print(f"{label} wall time {seconds:.0f} s")
        server_text = trim_log(server_log.read_text(errors="replace"))
        print(f"--- {label} log ---\n" + "\n".join(server_text.splitlines()[-40:]))
    return levels, seconds


def peer_metrics(ours: list[dict], peer: list[dict]) -> dict:
    """The peer's tokens/s per level as ``peer_*`` metrics, and ours over the peer's at each level."""
    metrics = {f"peer_{k}": v for k, v in level_metrics(peer).items() if k.startswith(("clients_", "tokens_per_second", "failed"))}
    theirs = {lv["clients"]: lv["tokens_per_second"] for lv in peer}
    for lv in ours:
        if lv["tokens_per_second"] and theirs.get(lv["clients"]):
            metrics[f"clients_{lv['clients']}_vs_peer"] = round(lv["tokens_per_second"] / theirs[lv["clients"]], 3)
    return metrics


def run_bench(args: BenchServeArguments, config: dict) -> None:
    """The whole benchmark: our server at each load level, then the peer's (``--peer``), into one result."""
    if not args.clients or any(c < 1 for c in args.clients):
        raise UserError("--clients: give one or more positive numbers, e.g. --clients 1 4 16 64")
    if args.max_tokens < 1 or args.rounds < 1 or args.min_requests < 1 or args.level_timeout_s <= 0:
        raise UserError("--max_tokens, --rounds and --min_requests must be >= 1, --level_timeout_s > 0")
    if args.adapter and not Path(args.adapter).is_dir():
        raise UserError(f"{args.adapter}: adapter folder not found")
    import importlib.util

    missing = [m for m in ("openai", "httpx") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"the benchmark client needs {' and '.join(missing)}: pip install -e '.[test]' (make setup installs them)")
    peer_port = free_port()
    peer_cmd = peer_command(args, peer_port) if args.peer else None  # a missing extra fails here, before any server starts

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = args.results_name or default_name(args.model_name_or_path, device)
    prompts = imdb_prompts()
    port = free_port()
    server_cmd = server_command(args, port)
    with capture_log(None) as log:
        levels, total = measure_server("server", server_cmd, f"http://127.0.0.1:{port}", args, prompts)
        metrics = level_metrics(levels)
        extra = {"levels": levels, "server_command": shlex.join(server_cmd), "bench_seconds": round(total, 1)}
        if peer_cmd:
            from imdb_llm.llm.loading import load_tokenizer

            tokenizer = load_tokenizer(args.model_name_or_path)  # llama-cpp-python streams no usage chunk: count the text's tokens
            peer_levels, peer_seconds = measure_server("peer", peer_cmd, f"http://127.0.0.1:{peer_port}", args, prompts, health="/v1/models",
                                                       stats=False, count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
            metrics.update(peer_metrics(levels, peer_levels))
            extra.update(peer_levels=peer_levels, peer_command=shlex.join(peer_cmd), peer_bench_seconds=round(peer_seconds, 1),
                         peer_version=package_version("llama-cpp-python"))
            print("ours / peer: " + ", ".join(f"{k.split('_')[1]} clients {v:.2f}" for k, v in metrics.items() if k.endswith("_vs_peer")))

    path = write_result(
        name,
        metrics,
        headline="serving",
        config={**config, **{k: v for k, v in vars(args).items() if k != "results_dir"}, "device": device},
        train_seconds=None,
        log_text=log.getvalue(),
        results_dir=args.results_dir,
        extra={**extra, "torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )
    print(f"wrote {path}")
