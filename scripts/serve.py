#!/usr/bin/env python
"""Serve a chat model over an OpenAI-compatible HTTP API (and a small web chat page at ``/``).

    python scripts/serve.py --model outputs/chatglm2-6b-native [--adapter DIR] [--port 8000] [--api-key KEY]

Then any OpenAI client works against it::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY or anything")
    client.chat.completions.create(model="chatglm2-6b-native", messages=[{"role": "user", "content": "hi"}])

A request that leaves out ``temperature``, ``top_p``, ``max_tokens``, ``repetition_penalty`` or
``no_repeat_ngram_size`` gets the model's generation defaults (:mod:`imdb_llm.llm.generation`: an
adapter's ``generation_defaults.json`` from sft_qlora.py, else the model's own), the same ones the
evaluation and the chat CLI use, and the web page starts from them; ``--temperature`` etc. override
them for the whole server.

It binds to loopback by default: put a reverse proxy with TLS in front before exposing it.
Concurrent requests are decoded together (continuous batching, bounded by --max_running and
--max_batch_tokens; beyond --max_queue waiting requests the server answers 503 + Retry-After).
See docs/serving.md for the API, batching, the fast-decoding flag and the vLLM route to multi-GPU serving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.loading import QUANTIZE_CHOICES, QUANTIZE_HELP
from imdb_llm.llm.med.guard import MedicalGuard
from imdb_llm.serve.engine import EngineArgs
from imdb_llm.llm.generation import GenerationOverrides


@dataclass
class ServeArguments:
    """The model to serve, where, and the HTTP limits (batching flags: EngineArgs; decoding flags: GenerationOverrides)."""

    model_name_or_path: str = field(metadata={"aliases": ["--model"], "help": "Model folder (e.g. the converted native ChatGLM2), .gguf, packaged:smollm2 or hub id. Needs a chat template."})
    adapter: str | None = field(default=None, metadata={"help": "Optional LoRA/QLoRA adapter folder applied on top of the model."})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind. Loopback by default; 0.0.0.0 exposes it to the network."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    api_key: str | None = field(default=None, metadata={"help": "Require 'Authorization: Bearer KEY' on every API request. Falls back to $SERVE_API_KEY (keeps the key out of `ps`)."})
    served_model_name: str | None = field(default=None, metadata={"help": "The model id clients pass as 'model'. Default: the model folder's name."})
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16, float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ... Default: cuda when available."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Load NF4-quantised (bitsandbytes, GPU only)."})
    quantize: str = field(default="auto", metadata={"help": QUANTIZE_HELP})
    max_tokens_cap: int = field(default=2048, metadata={"help": "Largest max_tokens a request may ask for."})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Reject request bodies larger than this (HTTP 413)."})
    threads: int | None = field(default=None, metadata={"help": "CPU only: torch threads for the model. Default: torch's (one per core); 1 is faster when other jobs share the cores."})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level: info logs every request; warning keeps benchmarks quiet."})
    web: bool = field(default=True, metadata={"help": "Serve the web chat page at /."})
    retrieval_k: int | None = field(default=None, metadata={"help": "Training records retrieved for each question; default: the model "
                                                                    "folder's setting (a medical assistant's retrieval_index.jsonl); 0 = off."})
    rules: bool | None = field(default=None, metadata={"help": "The medical safety rules around each answer; default: on for a medical assistant."})

    def __post_init__(self):
        self.api_key = self.api_key or os.environ.get("SERVE_API_KEY") or None
        if self.adapter and not Path(self.adapter).is_dir():
            raise UserError(f"{self.adapter}: adapter folder not found")
        if self.max_tokens_cap < 1 or self.max_body_bytes < 1024:
            raise UserError("--max_tokens_cap must be >= 1, --max_body_bytes >= 1024")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise UserError(f"--log_level {self.log_level!r}: choose critical, error, warning, info, debug or trace")
        if self.threads is not None and self.threads < 1:
            raise UserError("--threads must be >= 1")
        if self.quantize not in QUANTIZE_CHOICES:
            raise UserError(f"--quantize {self.quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")


@run_main
def main(argv=None):
    (args, engine_args, overrides, _config) = parse_args([ServeArguments, EngineArgs, GenerationOverrides], argv)
    settings = overrides.resolve(args.model_name_or_path, args.adapter)
    import torch
    import uvicorn

    from imdb_llm.llm.loading import context_length_of, load_chat_tokenizer, load_for_decoding
    from imdb_llm.llm.prompts import require_chat_template
    from imdb_llm.serve.api_server import create_app
    from imdb_llm.serve.engine import GenerationEngine

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    folder = args.adapter or args.model_name_or_path
    tokenizer = load_chat_tokenizer(args.model_name_or_path, args.adapter)
    guard = MedicalGuard.from_folder(folder, args.retrieval_k, args.rules)
    require_chat_template(tokenizer, f"serve a chat/instruct model, not {args.model_name_or_path}")
    model, weights = load_for_decoding(args.model_name_or_path, device=device, quantize=args.quantize, adapter=args.adapter, dtype=args.dtype,
                                       load_in_4bit=args.load_in_4bit, device_map=device if args.load_in_4bit else None)

    if engine_args.compile:
        from imdb_llm.serve.compile_check import require_compile_pays

        timing = require_compile_pays(model, tokenizer, context_length=min(engine_args.max_model_len or 10**9, context_length_of(model, tokenizer)))
        if timing:
            print(f"--compile: {timing[0]:.1f} tokens/s compiled against {timing[1]:.1f} without (timed at startup)", flush=True)
    name = args.served_model_name or Path(args.model_name_or_path.rstrip("/")).name.removesuffix(".gguf").removeprefix("packaged:")
    decode = engine_args.decode
    app = create_app(GenerationEngine.from_args(model, tokenizer, engine_args), model_name=name, api_key=args.api_key, max_tokens_cap=args.max_tokens_cap,
                     generation_defaults=settings, max_body_bytes=args.max_body_bytes, web=args.web, guard=guard)
    batching = f"continuous batching up to {engine_args.max_running} requests" if decode == "dynamic" else "one request at a time"
    print(f"serving '{name}' on http://{args.host}:{args.port}  (API: /v1, web page: /, decode: {decode}, {batching}, {torch.get_num_threads()} torch threads, {weights}, auth: {'on' if args.api_key else 'off'}; "
          f"decoding defaults {settings.spec()} from {settings.source}){'; ' + guard.describe() if guard else ''}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
