#!/usr/bin/env python
"""Score a chat model's answers on the validation set: base model vs base + LoRA adapter (or vs a
fully fine-tuned model, ``--tuned_model``).

Answers are decoded with the model's generation defaults (:mod:`imdb_llm.llm.generation`: the
adapter's ``generation_defaults.json`` from sft_qlora.py, else the model's own), the same ones
the chat CLI and the server use; explicit flags (``--max_new_tokens``, ``--repetition_penalty``,
...) override them, and the base model is decoded exactly like the tuned one. Scores: ROUGE-1/2/L
(F1) and corpus BLEU-4 on Chinese tokens (jieba words or characters), loop rate and distinct-2
(also of the references); writes ``results/<results_name>.json`` with the predictions beside it
(``results/<results_name>.predictions.jsonl``: question, reference, base, adapter or tuned).

    python scripts/eval_chat.py --model_name_or_path outputs/chatglm2-6b --adapter outputs/chatglm2-6b-qlora-med \
        --max_eval_samples 200 --results_name chatglm2-6b-qlora-med-eval
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.prompts import apply_template_override
from imdb_llm.llm.sft.data import load_conversations, seeded_subset
from imdb_llm.llm.generation import GenerationOverrides
from imdb_llm.llm.sft.generate import generate_answers, write_predictions
from imdb_llm.llm.sft.metrics import generation_metrics, text_metrics
from imdb_llm.llm.sft.quant import is_cuda, quantizable_model_path
from imdb_llm.results import ResultArguments, capture_log, write_result


@dataclass
class EvalArguments:
    """Which model(s) to judge, on which records, scored how."""

    model_name_or_path: str = field(default="packaged:smollm2", metadata={"help": "The base model (as in sft_qlora.py)."})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder from sft_qlora.py; without it only the base is scored."})
    tuned_model: str | None = field(default=None, metadata={"help": "A fully fine-tuned model folder (sft_qlora.py --finetuning full) to judge against the base."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Load the base in 4-bit NF4 (as during QLoRA training)."})
    dtype: str = field(default="bfloat16", metadata={"help": "Weights dtype when not 4-bit: bfloat16, float16 or float32."})
    validation_file: str = field(default="data/bentsao_med_zh/validation.jsonl", metadata={"help": "JSONL/JSON chat data or hub id."})
    max_eval_samples: int | None = field(default=100, metadata={"help": "Seeded subset size (None = all)."})
    subset_seed: int = field(default=42, metadata={"help": "Seed for the subset."})
    chat_template: str | None = field(default=None, metadata={"help": "'chatglm2' or a Jinja file, if the tokenizer has none."})
    system_prompt: str | None = field(default=None, metadata={"help": "System message before every conversation."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    metric_tokens: str = field(default="jieba", metadata={"help": "jieba (words) or char."})
    cache_dir: str = field(default="outputs/cache", metadata={"help": "Where a GGUF base is de-quantised for 4-bit loading."})

    def __post_init__(self):
        if self.metric_tokens not in ("jieba", "char"):
            raise UserError("--metric_tokens must be jieba or char")
        if self.adapter and self.tuned_model:
            raise UserError("give --adapter or --tuned_model, not both")


@run_main
def main(argv=None):
    args, overrides, result_args, config = parse_args([EvalArguments, GenerationOverrides, ResultArguments], argv)
    with capture_log(None) as log:
        return _main(args, overrides, result_args, config, log)


def _main(args, overrides, result_args, config, log):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise UserError(f"{args.adapter}: not a LoRA adapter folder (no adapter_config.json)")
    settings = overrides.resolve(args.tuned_model or args.model_name_or_path, args.adapter)
    print(f"decoding ({settings.source}): {settings.spec()}")
    convs, report = load_conversations(args.validation_file, "validation", args.system_prompt)
    convs = seeded_subset(convs, args.max_eval_samples, args.subset_seed)
    print(report.describe(), f"-> scoring {len(convs)}")

    model_path = quantizable_model_path(args.model_name_or_path, args.cache_dir) if args.load_in_4bit else args.model_name_or_path
    # The adapter / tuned folder holds the tokenizer the model was trained with (chat template included).
    tuned_dirs = [d for d in (args.adapter, args.tuned_model) if d and (Path(d) / "tokenizer_config.json").is_file()]
    tokenizer = load_tokenizer(tuned_dirs[0] if tuned_dirs else model_path)
    apply_template_override(tokenizer, args.chat_template)
    model = load_causal_lm(model_path, adapter=args.adapter, load_in_4bit=args.load_in_4bit,
                           dtype=args.dtype if not args.load_in_4bit else "bfloat16", device_map="auto" if is_cuda() else None)
    refs = [c["messages"][-1]["content"] for c in convs]
    predictions, metrics = {}, {"n_eval": len(convs)}
    start = time.perf_counter()

    def answers(m):
        return generate_answers(m, tokenizer, convs, settings, args.batch_size, seed=args.subset_seed)

    if args.adapter:
        with model.disable_adapter():  # the same weights without the LoRA update = the base model
            predictions["base"] = answers(model)
        predictions["adapter"] = answers(model)
    else:
        predictions["base"] = answers(model)
    if args.tuned_model:
        del model
        predictions["tuned"] = answers(load_causal_lm(args.tuned_model, dtype=args.dtype, device_map="auto" if is_cuda() else None))
    for name, preds in predictions.items():
        metrics.update({f"{name}_{k}": v for k, v in generation_metrics(preds, refs, args.metric_tokens).items()})
    metrics.update({f"reference_{k}": v for k, v in text_metrics(refs, args.metric_tokens).items()})
    seconds = time.perf_counter() - start
    for k, v in metrics.items():
        print(f"{k}: {v}")
    if result_args.results_name:
        write_predictions(Path(result_args.results_dir) / f"{result_args.results_name}.predictions.jsonl", convs, predictions)
        write_result(result_args.results_name, metrics, headline="generation", config=config, train_seconds=None, log_text=log.getvalue(),
                     results_dir=result_args.results_dir,
                     extra={"generation_seconds": round(seconds, 1), "metric_tokens": args.metric_tokens, "data": report.summary(),
                            "generation_defaults": {**settings.to_dict(), "source": settings.source}})
    return metrics


if __name__ == "__main__":
    main()
