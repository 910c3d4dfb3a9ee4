#!/usr/bin/env python
"""Batch-1 decode speed of a ChatGLM2-6B-shaped model: textbook ``generate`` vs fast decoding.

    python scripts/bench_decode.py                       # GPU, bf16, ChatGLM2-6B shape
    python scripts/bench_decode.py --preset tiny --device cpu --new_tokens 8   # a CPU smoke test

Why random weights: decode speed depends on shapes, dtype and kernels, not on the values, so a
``GlmForCausalLM`` built from ChatGLM2-6B's config (hidden 4096, 28 layers, 32 query heads, 2 KV
heads, FFN 13696, vocab 65024, rotary on half of each head) measures the real thing without a
12.5 GB download. At batch 1 every new token streams all weights from HBM once, so the ceiling
is memory bandwidth / model bytes; the gap to it is per-token overhead (Python, kernel launches,
a KV cache that reallocates as it grows). The modes remove that overhead step by step:

* ``generate``       - ``model.generate`` with the default dynamic KV cache (the textbook way).
* ``static``         - a preallocated KV cache (``cache_implementation="static"``), no compile.
* ``static_compile`` - static cache + ``torch.compile`` (mode reduce-overhead: CUDA graphs), the
                       path ``scripts/serve.py --compile`` uses.
* ``compiled_loop``  - gpt-fast style: one compiled "forward one token + argmax" step called in a
                       plain Python loop, nothing else per token (an upper bound for HF models).

Writes ``results/<results_name>.json`` (+ .log) with tokens/s per mode; the headline
``tokens_per_s`` is the best mode.
"""

from __future__ import annotations

import inspect
import statistics
import time
from dataclasses import dataclass, field


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.chatglm2.config import CHATGLM2_6B
from imdb_llm.results import capture_log, write_result

MODES = ("generate", "static", "static_compile", "compiled_loop")

# ChatGLM2-6B's shape (imdb_llm.llm.chatglm2.config), and a 2-layer toy of it for CPU tests.
PRESETS = {
    "chatglm2-6b": CHATGLM2_6B,
    "tiny": dict(CHATGLM2_6B, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, head_dim=16, max_position_embeddings=512),
}


@dataclass
class BenchArguments:
    preset: str = field(default="chatglm2-6b", metadata={"help": f"Model shape: one of {', '.join(PRESETS)}."})
    dtype: str = field(default="bfloat16", metadata={"help": "bfloat16, float16 or float32."})
    device: str = field(default="auto", metadata={"help": "cuda, cpu or auto (cuda when available)."})
    prompt_tokens: int = field(default=32, metadata={"help": "Prompt length (random token ids)."})
    new_tokens: int = field(default=256, metadata={"help": "Tokens generated per timed run (EOS is disabled, so exactly this many)."})
    repeats: int = field(default=3, metadata={"help": "Timed runs per mode; the median is reported."})
    warmup: int = field(default=2, metadata={"help": "Untimed runs per mode first (compilation, CUDA graph capture, allocator)."})
    modes: list[str] = field(default_factory=lambda: list(MODES), metadata={"help": f"Which of {', '.join(MODES)} to run."})
    compile_backend: str = field(default="inductor", metadata={"help": "torch.compile backend (tests use 'eager' on CPU: traces, no codegen)."})
    compile_mode: str = field(default="reduce-overhead", metadata={"help": "torch.compile mode; reduce-overhead = CUDA graphs."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel: sdpa or eager."})
    seed: int = field(default=0, metadata={"help": "Seed for the random weights and prompt."})
    results_name: str = field(default="decode-chatglm2-6b", metadata={"help": "Result file name under results_dir."})
    results_dir: str = field(default="results", metadata={"help": "Where the result JSON + log go."})


def build_model(args, torch, device):
    """A randomly initialised GlmForCausalLM of the preset's shape, directly on ``device``."""
    from transformers import GlmConfig, GlmForCausalLM

    config = GlmConfig(**PRESETS[args.preset])
    config._attn_implementation = args.attn_implementation
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = GlmForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.generation_config.eos_token_id = None  # never stop early: every run makes new_tokens tokens
    model.generation_config.pad_token_id = 0
    return model


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_generate_runner(model, mode, args, torch, device):
    """A callable(prompt) -> generated ids using ``model.generate`` in the given mode."""
    from transformers import CompileConfig, GenerationConfig

    cfg = GenerationConfig(
        max_new_tokens=args.new_tokens, min_new_tokens=None, do_sample=False, eos_token_id=None, pad_token_id=0, num_beams=1,
    )
    if mode == "generate":
        cfg.disable_compile = True
    else:
        cfg.cache_implementation = "static"
        cfg.max_cache_len = args.prompt_tokens + args.new_tokens
        if mode == "static":
            cfg.disable_compile = True
        else:
            cfg.compile_config = CompileConfig(backend=args.compile_backend, mode=args.compile_mode if device.type == "cuda" else "default")
            cfg.compile_config._compile_all_devices = True  # also compile when benchmarking on CPU

    def run(prompt):
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=cfg)
        return out[:, prompt.shape[1] :]

    return run


def make_compiled_loop_runner(model, args, torch, device):
    """gpt-fast's recipe on a transformers model: static cache, compiled one-token step, argmax."""
    from transformers import StaticCache

    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
    pass_cache_position = "cache_position" in params or "cache_position" in inspect.signature(model.model.forward).parameters
    cache = StaticCache(config=model.config, max_cache_len=args.prompt_tokens + args.new_tokens)

    def forward(ids, pos):
        kwargs = {cache_kw: cache, "position_ids": pos[None, :], "use_cache": True, "logits_to_keep": 1}
        if pass_cache_position:
            kwargs["cache_position"] = pos
        return model(input_ids=ids, **kwargs).logits[:, -1].argmax(-1, keepdim=True)

    step = torch.compile(forward, backend=args.compile_backend, mode=args.compile_mode if device.type == "cuda" else None, fullgraph=False, dynamic=False)

    def run(prompt):
        cache.reset()
        n = prompt.shape[1]
        pos = torch.arange(n, device=device)
        token = forward(prompt, pos)  # prefill, not compiled (its shape differs from decode's)
        out = [token]
        for i in range(args.new_tokens - 1):
            if hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                torch.compiler.cudagraph_mark_step_begin()
            token = step(token, torch.tensor([n + i], device=device)).clone()  # clone: CUDA graph outputs are reused
            out.append(token)
        return torch.cat(out, dim=1)

    return run


def time_mode(run, prompt, args, torch, device) -> dict[str, float]:
    with torch.inference_mode():
        for _ in range(args.warmup):
            run(prompt)
        seconds = []
        for _ in range(args.repeats):
            _sync(torch, device)
            start = time.perf_counter()
            out = run(prompt)
            _sync(torch, device)
            seconds.append(time.perf_counter() - start)
    if out.shape[1] != args.new_tokens:
        raise RuntimeError(f"expected {args.new_tokens} new tokens, got {out.shape[1]}")
    median = statistics.median(seconds)
    return {"tokens_per_s": args.new_tokens / median, "seconds_median": median, "seconds_min": min(seconds), "tokens": args.new_tokens}, out


@run_main
def main(argv=None):
    (args, config) = parse_args([BenchArguments], argv)
    if args.preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}")
    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        raise UserError(f"--modes: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(MODES)}")
    if args.prompt_tokens < 1 or args.new_tokens < 2 or args.repeats < 1 or args.warmup < 0:
        raise UserError("--prompt_tokens >= 1, --new_tokens >= 2, --repeats >= 1, --warmup >= 0")

    import torch

    if args.dtype not in ("bfloat16", "float16", "float32"):
        raise UserError("--dtype must be bfloat16, float16 or float32")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))

    with capture_log(None) as log:
        model = build_model(args, torch, device)
        n_params = sum(p.numel() for p in model.parameters())
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        print(f"{args.preset}: {n_params / 1e9:.3f} B parameters, {weight_bytes / 1e9:.2f} GB of weights, {args.dtype} on {device}")
        generator = torch.Generator().manual_seed(args.seed)
        prompt = torch.randint(3, PRESETS[args.preset]["vocab_size"], (1, args.prompt_tokens), generator=generator).to(device)

        per_mode, outputs, errors = {}, {}, {}
        for mode in args.modes:
            try:
                run = make_compiled_loop_runner(model, args, torch, device) if mode == "compiled_loop" else make_generate_runner(model, mode, args, torch, device)
                per_mode[mode], outputs[mode] = time_mode(run, prompt, args, torch, device)
            except Exception as exc:  # one broken fast path must not cost the other measurements
                errors[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"{mode:>15}: FAILED {errors[mode]}")
                continue
            finally:
                torch._dynamo.reset()  # each mode compiles from scratch
            print(f"{mode:>15}: {per_mode[mode]['tokens_per_s']:8.1f} tokens/s  (median {per_mode[mode]['seconds_median']:.3f} s for {args.new_tokens} tokens)")
        if not per_mode:
            raise RuntimeError(f"every mode failed: {errors}")

        # Fast paths must produce the textbook tokens (greedy on identical weights). bf16 kernels
        # may differ in the last bit, so report agreement rather than fail on it.
        first = next(iter(outputs))
        agreement = {m: float((o == outputs[first]).float().mean()) for m, o in outputs.items()}
        print("greedy-token agreement with", first, agreement)
        best = max(per_mode, key=lambda m: per_mode[m]["tokens_per_s"])
        metrics = {"tokens_per_s": per_mode[best]["tokens_per_s"], "best_mode": best}
        for mode, m in per_mode.items():
            metrics[f"{mode}_tokens_per_s"] = m["tokens_per_s"]
        if device.type == "cuda":
            metrics["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        metrics["weight_gb"] = weight_bytes / 1e9
        print(f"best: {best} at {metrics['tokens_per_s']:.1f} tokens/s")

    path = write_result(
        args.results_name,
        metrics,
        headline="throughput",
        config={**config, **{k: v for k, v in vars(args).items() if k not in ("results_dir",)}},
        train_seconds=None,
        log_text=log.getvalue(),
        results_dir=args.results_dir,
        extra={"per_mode": per_mode, "failed_modes": errors, "token_agreement": agreement, "torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
