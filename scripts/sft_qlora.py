#!/usr/bin/env python
"""QLoRA supervised fine-tuning of a chat model (ChatGLM2-6B, SmolLM2, ...) on instruction data.

QLoRA (Dettmers et al. 2023) = the frozen base model stored in 4-bit NF4 with double quantisation,
computed in bf16, plus small trainable LoRA matrices on every linear layer, gradient
checkpointing and a paged 8-bit AdamW. A 6B model then trains in ~10 GiB.

On a CPU, 4-bit weights are slower than full precision and save nothing that matters for a small
model: ``--load_in_4bit false`` trains plain LoRA on fp32 weights, computed in bf16 autocast where
the CPU has native bf16 (``--mixed_precision auto``; 2.3x fp32 for SmolLM2 on a 2-core EPYC).

    python scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml

Shaped like transformers' examples/pytorch/text-classification/run_classification.py: arguments
are dataclasses, main() reads top to bottom. Data handling lives in ``imdb_llm.sft``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from copy import deepcopy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imdb_llm.cli import UserError, parse_args, run_main  # noqa: E402
from imdb_llm.progress import ProgressLine  # noqa: E402
from imdb_llm.results import capture_log, write_result  # noqa: E402
from imdb_llm.precision import precision_flags, precision_label  # noqa: E402
from imdb_llm.sft.collate import ListDataset, PackingCollator, PadCollator  # noqa: E402
from imdb_llm.sft.data import SftDataArguments, load_conversations, seeded_subset  # noqa: E402
from imdb_llm.sft.generate import cached_answers, generate_answers, model_fingerprint, write_predictions  # noqa: E402
from imdb_llm.sft.metrics import generation_metrics  # noqa: E402
from imdb_llm.sft.quant import is_cuda, keep_4bit_trainable, quantizable_model_path  # noqa: E402
from imdb_llm.sft.template import apply_template_override, choose_max_length, encode_conversation, encode_dataset, length_stats  # noqa: E402
from imdb_llm.resume import SettingsRecord, TrainClock, resolve_resume, run_settings  # noqa: E402
from imdb_llm.threads import set_torch_threads  # noqa: E402
from imdb_llm.training import ResultArguments  # noqa: E402


@dataclass
class ModelArguments:
    """The base model, how it is quantised, and where LoRA goes."""

    model_name_or_path: str = field(
        default="packaged:smollm2",
        metadata={"help": "Local folder, hub id, .gguf, or packaged:smollm2. ChatGLM2 must be the native (GlmForCausalLM) conversion."},
    )
    load_in_4bit: bool = field(
        default=True,
        metadata={"help": "Load the frozen base in 4-bit NF4 + double quantisation (QLoRA). false = plain LoRA on full-precision "
                  "weights (fp32 on a CPU, bf16 on a GPU with --mixed_precision bf16): faster on a CPU."},
    )
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a GPU that has it or a CPU with native bf16, else fp16 on a GPU, fp32 on a CPU), bf16, fp16 or no."},
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa, eager or flash_attention_2."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "'all-linear' (every linear layer but the LM head) or a comma list."})
    cache_dir: str = field(default="outputs/cache", metadata={"help": "Where a GGUF base is de-quantised once so it can be loaded in 4-bit and trained."})


@dataclass
class GenerationEvalArguments:
    """Optional ROUGE/BLEU of generated answers, base model vs base + adapter, on validation."""

    generate_eval_samples: int = field(default=0, metadata={"help": "Generate answers for this many (seeded) validation records; 0 = skip."})
    max_new_tokens: int = field(default=128, metadata={"help": "Generation length limit."})
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    metric_tokens: str = field(default="jieba", metadata={"help": "ROUGE/BLEU units for Chinese: jieba (words) or char."})
    answers_cache_dir: str = field(
        default="outputs/cache/answers",
        metadata={"help": "Keep the base model's answers here, keyed by model, prompts and settings, so a rerun does not "
                  "generate them again; empty = no cache."},
    )


def build_training_args(argv):
    """Parse the four argument groups; QLoRA-friendly defaults are set in the YAML configs."""
    return parse_args(argument_types(), argv)


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    from transformers import TrainingArguments

    return (ModelArguments, SftDataArguments, GenerationEvalArguments, TrainingArguments, ResultArguments)


@run_main
def main(argv=None, extra_callbacks=None):
    model_args, data_args, gen_args, training_args, result_args, config = build_training_args(argv)
    with capture_log(None) as log:
        return _main(model_args, data_args, gen_args, training_args, result_args, config, log, extra_callbacks)


def _main(model_args, data_args, gen_args, training_args, result_args, config, log, extra_callbacks):
    import torch
    from transformers import AutoConfig, Trainer, set_seed

    from imdb_llm.llm import load_causal_lm, load_tokenizer

    set_seed(training_args.seed)
    print(f"torch threads: {set_torch_threads()}")  # one per physical core unless OMP_NUM_THREADS says otherwise
    training_args = dataclasses.replace(training_args, **precision_flags(model_args.mixed_precision))
    precision = ("4-bit NF4 weights, " if model_args.load_in_4bit else "full-precision weights, ") + precision_label(model_args.mixed_precision)
    print(f"precision: {precision}")
    if gen_args.metric_tokens not in ("jieba", "char"):
        raise UserError("--metric_tokens must be jieba or char")

    # 1. Data first: a broken file should fail in a second, not after loading a 6B model.
    train_convs, train_report = load_conversations(data_args.train_file, "train", data_args.system_prompt)
    eval_convs, eval_report = load_conversations(data_args.validation_file, "validation", data_args.system_prompt)
    train_convs = seeded_subset(train_convs, data_args.max_train_samples, data_args.subset_seed)
    eval_convs = seeded_subset(eval_convs, data_args.max_eval_samples, data_args.subset_seed)
    settings = run_settings(model_args, data_args, training_args=training_args)
    resume = resolve_resume(training_args, settings)  # refuses a checkpoint of a run with other settings
    if resume:
        print(f"resuming from {resume}", flush=True)

    # 2. Tokenizer and prompts: the model's own chat template, loss only on the answer + EOS.
    # A GGUF base is de-quantised once into safetensors: transformers neither loads a GGUF file in
    # 4-bit nor trains a model it loaded from one (it counts as "quantized with GGUF").
    model_path = quantizable_model_path(model_args.model_name_or_path, model_args.cache_dir)
    tokenizer = apply_template_override(load_tokenizer(model_path), data_args.chat_template)
    for conv in train_convs + eval_convs:
        conv["_enc"] = encode_conversation(tokenizer, conv["messages"])
    lengths = [len(c["_enc"]["input_ids"]) for c in train_convs]
    model_config = AutoConfig.from_pretrained(model_path) if not model_path.startswith("packaged:") else None
    cap = getattr(model_config, "max_position_embeddings", None)
    max_length = data_args.max_length or choose_max_length(lengths, data_args.max_length_percentile, cap=cap)
    print(f"train token lengths {length_stats(lengths)} -> max_length {max_length}"
          f"{'' if data_args.max_length else f' (p{data_args.max_length_percentile:g} of the data)'}")
    train_data = ListDataset(encode_dataset(tokenizer, train_convs, train_report, max_length))
    eval_data = ListDataset(encode_dataset(tokenizer, eval_convs, eval_report, max_length))
    print(train_report.describe())
    print(eval_report.describe())

    # 3. The frozen base in 4-bit NF4 (bf16 compute), LoRA on all linear layers.
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    device_map = None
    if is_cuda():  # one full copy per process under DDP (device_map="auto" would split it instead)
        device_map = {"": training_args.local_process_index}
    # Weights: 4-bit (bf16 compute) for QLoRA; else bf16 on a GPU, fp32 on a CPU (where bf16 is
    # autocast: the weights and optimizer stay exact, the matmuls run in bf16).
    weight_dtype = "bfloat16" if training_args.bf16 and (model_args.load_in_4bit or is_cuda()) else "float32"
    model = load_causal_lm(model_path, load_in_4bit=model_args.load_in_4bit, dtype=weight_dtype,
                           device_map=device_map, attn_implementation=model_args.attn_implementation)
    model.config.use_cache = False  # the KV cache is for generation; it also disables packed-sequence masks
    if model_args.load_in_4bit:
        # Norms / embeddings to fp32 and input grads on, so checkpointed layers get gradients.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=training_args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = model_args.lora_target_modules
    lora = LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")])
    model = get_peft_model(model, lora)
    # Before any evaluation: on CPUs with AVX512-BF16, bitsandbytes would otherwise repack the 4-bit
    # weights for inference during the base-model evaluation and training would then fail.
    n_4bit = keep_4bit_trainable(model)
    model.print_trainable_parameters()
    if training_args.gradient_checkpointing:
        training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}

    # Paged 8-bit AdamW pages optimizer state to host RAM under memory pressure; it is a CUDA
    # feature. bitsandbytes' CPU backend runs it too, but say so if we ever have to switch.
    if "paged" in training_args.optim and not is_cuda():
        try:
            import bitsandbytes as bnb

            bnb.optim.PagedAdamW8bit([torch.nn.Parameter(torch.zeros(4))], lr=1e-3).step()
        except Exception as exc:  # noqa: BLE001
            print(f"optimizer {training_args.optim} unavailable without CUDA ({type(exc).__name__}); using adamw_torch")
            training_args.optim = "adamw_torch"

    collator = PackingCollator() if data_args.packing else PadCollator(tokenizer.pad_token_id)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_data, eval_dataset=eval_data,
                      data_collator=collator, processing_class=tokenizer, callbacks=[ProgressLine(), *(extra_callbacks or [])])

    metrics: dict = {"n_train": len(train_data), "n_eval": len(eval_data), "max_length": max_length, "quantized_linear_layers": n_4bit}
    gen_convs = seeded_subset(eval_convs, gen_args.generate_eval_samples, data_args.subset_seed) if gen_args.generate_eval_samples else []
    predictions: dict[str, list[str]] = {}

    # 4. Baseline: the base model is the model with the adapter switched off, before or after a
    # resume alike. Its answers are cached, since they cost as much as the adapter's.
    # Answers are generated by a bf16 copy where training runs in bf16 autocast on a CPU: decoding
    # is many small matmuls, and the copy measured 1.7x the fp32 model (autocast would re-cast the
    # frozen weights at every step). The fp32 weights being trained are left untouched.
    gen_dtype = "bfloat16" if training_args.bf16 and not is_cuda() and weight_dtype == "float32" else weight_dtype
    metrics["generation_dtype"] = gen_dtype
    with model.disable_adapter():
        metrics["eval_loss_base"] = trainer.evaluate()["eval_loss"]
        print(f"validation loss of the base model: {metrics['eval_loss_base']:.4f}")
    if gen_convs:
        base_id = f"{model_fingerprint(model_path)}|4bit={model_args.load_in_4bit}|{weight_dtype}|generate={gen_dtype}"
        with generation_copy(model, gen_dtype) as gen_model, gen_model.disable_adapter():
            predictions["base"], metrics["base_answers_cached"] = cached_answers(
                gen_args.answers_cache_dir, base_id, gen_model, tokenizer, gen_convs, gen_args.max_new_tokens, gen_args.generation_batch_size)
        metrics.update({f"base_{k}": v for k, v in generation_metrics(predictions["base"], _refs(gen_convs), gen_args.metric_tokens).items()})

    # 5. Train (resumable: checkpoints hold adapter, optimizer, scheduler, RNG and data position).
    start_step = int(resume.rstrip("/").rsplit("-", 1)[1]) if resume else 0
    clock = TrainClock(resume)  # train_seconds adds up across interruptions
    trainer.add_callback(clock)
    trainer.add_callback(SettingsRecord(settings))
    start = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=resume)
    segment_seconds = time.perf_counter() - start
    train_seconds = clock.before + segment_seconds
    metrics["train_seconds_this_process"] = round(segment_seconds, 1)
    metrics["train_loss"] = train_out.training_loss
    metrics["global_step"] = train_out.global_step
    metrics["resumed_from_step"] = start_step
    # Tokens/s over the real (unpadded) tokens of the samples this process trained on.
    samples = (train_out.global_step - start_step) * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    mean_tokens = sum(len(x["input_ids"]) for x in train_data.items) / len(train_data)
    metrics["train_tokens_per_second"] = round(samples * mean_tokens / segment_seconds, 1) if segment_seconds > 0 else None
    metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    print(f"validation loss after training: {metrics['eval_loss']:.4f}")
    if gen_convs:
        with generation_copy(model, gen_dtype) as gen_model:
            predictions["adapter"] = generate_answers(gen_model, tokenizer, gen_convs, gen_args.max_new_tokens, gen_args.generation_batch_size)
        metrics.update({f"adapter_{k}": v for k, v in generation_metrics(predictions["adapter"], _refs(gen_convs), gen_args.metric_tokens).items()})

    # 6. Save the adapter (+ tokenizer with its chat template) for eval_chat / merge / chat / serve.
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
        report = {"train": train_report.summary(), "validation": eval_report.summary(), "max_length": max_length,
                  "train_length_stats": length_stats(lengths)}
        Path(training_args.output_dir, "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        Path(training_args.output_dir, "sft_results.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        print(json.dumps(metrics, indent=2))
        if gen_convs:
            write_predictions(Path(training_args.output_dir) / "predictions.jsonl", gen_convs, predictions)
        if result_args.results_name:
            if gen_convs:
                write_predictions(Path(result_args.results_dir) / f"{result_args.results_name}.predictions.jsonl", gen_convs, predictions)
            write_result(result_args.results_name, metrics, config=config, train_seconds=train_seconds, log_text=log.getvalue(),
                         results_dir=result_args.results_dir,
                         extra={"data": report, "lora": {k: v for k, v in asdict(model_args).items() if k.startswith("lora")},
                                "method": "QLoRA (4-bit NF4 base + LoRA)" if model_args.load_in_4bit else "LoRA (full-precision base)",
                                "precision": precision, "n_generation_samples": len(gen_convs), "metric_tokens": gen_args.metric_tokens,
                                "max_new_tokens": gen_args.max_new_tokens})
    return metrics


@contextlib.contextmanager
def generation_copy(model, dtype: str):
    """``model`` itself when it already computes in ``dtype``, else a throw-away copy cast to it."""
    import torch

    same = next(model.parameters()).dtype == getattr(torch, dtype)
    yield model if same else deepcopy(model).to(getattr(torch, dtype))


def _refs(convs):
    return [c["messages"][-1]["content"] for c in convs]


if __name__ == "__main__":
    main()
