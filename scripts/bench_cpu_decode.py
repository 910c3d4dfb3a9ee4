#!/usr/bin/env python
"""Which decoding weights pay on a CPU, and what they cost in fidelity: fp32 vs bf16 vs int4, one process.

    python scripts/bench_cpu_decode.py                    # make bench-cpu-decode (packaged:smollm2)

The model loads three ways: fp32 (a GGUF file dequantized, the reference), bf16 (``--dtype
bfloat16``), and int4 (``--quantize int4``: the linear layers' 4-bit groups, imdb_llm.llm.quantize).
Each then decodes the same chat prompts greedily through the server's own batch
(:class:`imdb_llm.serve.batch.PaddedBatch`), so the figures are the engine's, not a toy loop's:

* ``<weights>_1_row_tokens_per_second``: one request alone (the chat CLI, the web page);
* ``<weights>_16_rows_tokens_per_second``: sixteen requests in one batch;
* ``<weights>_same_tokens_as_fp32``: of all greedy tokens, the share produced before that prompt's
  answer first differs from fp32's: how long the cheaper weights keep saying exactly the same thing.

All in one run, same prompts and thread count, so the ratios hold even where absolute times are noisy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.prompts import prompt_ids
from imdb_llm.results import capture_log, write_result

QUESTIONS = ["Tell me about the history of the Roman empire in a few sentences.", "What is the capital of France?",
             "Write a haiku about autumn.", "How do I boil an egg?", "Explain photosynthesis to a child.",
             "Give me three tips for a job interview.", "Why is the sky blue?", "What should I pack for a weekend hike?"]
WEIGHTS = ("fp32", "bf16", "int4")


@dataclass
class CpuDecodeArguments:
    model_name_or_path: str = field(default="packaged:smollm2", metadata={"aliases": ["--model"], "help": "A chat model whose weights are a Q4_1 GGUF file (packaged:smollm2), or any model for a lossy int4."})
    new_tokens: int = field(default=48, metadata={"help": "Greedy tokens per prompt (the answer may end earlier at end-of-turn)."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: one per core)."})
    results_name: str = field(default="decode-weights-smollm2-cpu", metadata={"help": "Result file name."})
    results_dir: str = field(default="results", metadata={"help": "Where the result JSON + log go."})

    def __post_init__(self):
        if self.new_tokens < 1 or (self.threads is not None and self.threads < 1):
            raise UserError("--new_tokens and --threads must be >= 1")


def load(model: str, weights: str):
    from imdb_llm.llm.loading import load_for_decoding

    quantize, dtype = {"fp32": ("none", "float32"), "bf16": ("none", "bfloat16"), "int4": ("int4", "auto")}[weights]
    return load_for_decoding(model, device="cpu", quantize=quantize, dtype=dtype)


def greedy(model, prompt: list[int], n: int, eos: set[int]) -> tuple[list[int], float]:
    """One request alone through the server's batch: its tokens and the seconds per token."""
    from imdb_llm.serve.batch import PaddedBatch

    batch, logits = PaddedBatch.prefill(model, [prompt], pad_id=0, device="cpu")
    tokens, start = [], time.perf_counter()
    for _ in range(n):
        token = logits.argmax(-1)
        tokens.append(int(token[0]))
        if tokens[-1] in eos:
            break
        logits = batch.step(token)
    return tokens, (time.perf_counter() - start) / len(tokens)


def batched_tokens_per_second(model, prompts: list[list[int]], steps: int) -> float:
    from imdb_llm.serve.batch import PaddedBatch

    batch, logits = PaddedBatch.prefill(model, prompts, pad_id=0, device="cpu")
    start = time.perf_counter()
    for _ in range(steps):
        logits = batch.step(logits.argmax(-1))
    return len(prompts) * steps / (time.perf_counter() - start)


def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@run_main
def main(argv=None):
    (args, config) = parse_args([CpuDecodeArguments], argv)
    import torch

    from imdb_llm.llm.loading import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model_name_or_path)
    prompts = [prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    eos = {tokenizer.eos_token_id}
    metrics: dict = {"threads": torch.get_num_threads(), "prompts": len(prompts)}
    answers: dict[str, list[list[int]]] = {}
    with capture_log(None) as log, torch.inference_mode():
        for weights in WEIGHTS:
            model, note = load(args.model_name_or_path, weights)
            print(f"{weights}: {note}", flush=True)
            greedy(model, prompts[0], 4, eos)  # warm-up
            runs = [greedy(model, p, args.new_tokens, eos) for p in prompts]
            answers[weights] = [tokens for tokens, _ in runs]
            metrics[f"{weights}_1_row_tokens_per_second"] = round(len(runs) / sum(s for _, s in runs), 2)
            metrics[f"{weights}_16_rows_tokens_per_second"] = round(batched_tokens_per_second(model, (prompts * 2)[:16], 16), 1)
            same = sum(first_difference(a, r) for a, r in zip(answers[weights], answers["fp32"]))
            metrics[f"{weights}_same_tokens_as_fp32"] = round(same / sum(len(r) for r in answers["fp32"]), 3)
            print(f"{weights}: 1 row {metrics[f'{weights}_1_row_tokens_per_second']} tok/s, 16 rows {metrics[f'{weights}_16_rows_tokens_per_second']} tok/s, "
                  f"same tokens as fp32 {metrics[f'{weights}_same_tokens_as_fp32']:.0%}\n  {tokenizer.decode(answers[weights][0])!r}", flush=True)
            del model
        for weights in ("bf16", "int4"):
            metrics[f"{weights}_vs_fp32_1_row"] = round(metrics[f"{weights}_1_row_tokens_per_second"] / metrics["fp32_1_row_tokens_per_second"], 2)
        metrics["decode_tokens_per_second"] = metrics["int4_1_row_tokens_per_second"]  # the throughput column: the fast path, one request
        metrics["int4_vs_bf16_1_row"] = round(metrics["int4_1_row_tokens_per_second"] / metrics["bf16_1_row_tokens_per_second"], 2)
        metrics["int4_vs_bf16_16_rows"] = round(metrics["int4_16_rows_tokens_per_second"] / metrics["bf16_16_rows_tokens_per_second"], 2)
    answers_text = {w: [tokenizer.decode(a) for a in answers[w]] for w in WEIGHTS}
    path = write_result(args.results_name, metrics, headline="decode_weights", config=config, log_text=log.getvalue(), results_dir=args.results_dir,
                        extra={"answers": answers_text, "questions": QUESTIONS})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
