"""Does ``--compile`` pay on this machine? On a CPU the server times it at startup and refuses it when it loses.

On a GPU, a compiled static-cache decode step replayed as a CUDA graph removes the per-token launch
overhead of a small model: that is what ``--compile`` is for. A CPU has no graphs to replay, and what
compiling buys there depends on the model, the weights' format and the CPU: on the 2-core CPU with
SmolLM2-135M it lost 4x (2.8 against 11.8 tokens/s, issue 34). So on a CPU both ways are timed on the
same prompt before serving, and the flag is refused with both figures when it is not faster.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from imdb_llm.cli import UserError
from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.serve.engine import GenerationEngine
from imdb_llm.serve.scheduler import Job

PROBE_PROMPT = "Write two sentences about the sea."


def decode_tokens_per_second(model, tokenizer, decode: str, *, context_length: int, tokens: int = 32) -> float:
    """Greedy tokens per second of one request through an engine of this ``decode`` mode, after one
    untimed request (which is when ``torch.compile`` compiles)."""
    prompt = tokenizer(PROBE_PROMPT, add_special_tokens=False)["input_ids"]
    engine = GenerationEngine(model, tokenizer, context_length=context_length, decode=decode)
    try:
        _generate(engine, prompt, tokens)
        return _generate(engine, prompt, tokens)
    finally:
        engine.close()


def _generate(engine: GenerationEngine, prompt: list[int], tokens: int) -> float:
    done, ending = threading.Event(), []

    def emit(event):
        if event[0] in ("done", "error"):
            ending.append(event)
            done.set()

    start = time.perf_counter()
    engine.submit(Job(prompt_ids=prompt, settings=GenerationDefaults(max_new_tokens=tokens), emit=emit))
    done.wait()
    elapsed = time.perf_counter() - start
    if ending[0][0] == "error":
        raise UserError(f"--compile: timing it at startup failed ({ending[0][1]}); run without --compile")
    return ending[0][2] / elapsed


def require_compile_pays(model, tokenizer, *, context_length: int,
                         measure: Callable[..., float] = decode_tokens_per_second) -> tuple[float, float] | None:
    """On a CPU: ``(compiled, default)`` tokens/s when compiling is faster, else a UserError with both.
    On a GPU nothing is timed (``None``)."""
    if next(model.parameters()).device.type == "cuda":
        return None
    compiled = measure(model, tokenizer, "compile", context_length=context_length)
    default = measure(model, tokenizer, "dynamic", context_length=context_length)
    if compiled <= default:
        raise UserError(f"--compile decodes {compiled:.1f} tokens/s on this CPU against {default:.1f} without it "
                        "(both timed at startup): run without --compile")
    return compiled, default
