#!/usr/bin/env python
"""Supervised fine-tuning of a chat model (ChatGLM2-6B, SmolLM2, ...) on instruction data: QLoRA,
LoRA on full-precision weights, or full fine-tuning; then a decoding search and a final judging.

QLoRA (Dettmers et al. 2023) = the frozen base model stored in 4-bit NF4 with double quantisation,
computed in bf16, plus small trainable LoRA matrices on every linear layer, gradient
checkpointing and a paged 8-bit AdamW. A 6B model then trains in ~10 GiB.

On a CPU, 4-bit weights are slower than full precision and save nothing that matters for a small
model: ``--load_in_4bit false`` trains plain LoRA on fp32 weights, computed in bf16 autocast where
the CPU has native bf16 (``--mixed_precision auto``; 2.3x fp32 for SmolLM2 on a 2-core EPYC), and
``--finetuning full`` trains every weight the same way.

Held-out data, kept apart (``--carve_validation``): a seeded part of the *training* file is the
validation set for the loss, the checkpoint chosen (``load_best_model_at_end``) and the decoding
search (``--decoding_candidates``, :mod:`imdb_llm.llm.sft.search`); ``validation_file`` is judged once,
at the end, base and tuned model with the same chosen settings, which become the model's
generation defaults (``generation_defaults.json`` in ``output_dir``, read by eval, chat and serve).

    python scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml

Shaped like transformers' examples/pytorch/text-classification/run_classification.py: arguments
are dataclasses, main() reads top to bottom. Data handling lives in ``imdb_llm.llm.sft``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.med.preference import attach_rejected
from imdb_llm.llm.med.prepare import MedicalDataArguments, answer_match_callbacks, clean_loaded, ground_all
from imdb_llm.llm.prompts import apply_template_override
from imdb_llm.llm.sft.collate import ListDataset, PackingCollator, PadCollator
from imdb_llm.llm.sft.data import DataReport, SftDataArguments, carve, load_conversations, seeded_subset
from imdb_llm.llm.sft.decoding import GenerationOverrides, resolve_generation_defaults
from imdb_llm.llm.sft.generate import cached_answers, model_fingerprint, weights_digest, write_predictions
from imdb_llm.llm.sft.metrics import generation_metrics, text_metrics
from imdb_llm.llm.sft.quant import is_cuda, keep_4bit_trainable, quantizable_model_path
from imdb_llm.llm.sft.search import DecodingSearchArguments, choose_decoding
from imdb_llm.llm.sft.template import choose_max_length, encode_conversation, encode_dataset, length_stats
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.progress import ProgressLine
from imdb_llm.results import ResultArguments, atomic_write_text, capture_log, write_result
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings, timed_train
from imdb_llm.threads import set_torch_threads


@dataclass
class ModelArguments:
    """The base model, how it is quantised, and what is trained (LoRA matrices or every weight)."""

    model_name_or_path: str = field(
        default="packaged:smollm2",
        metadata={"help": "Local folder, hub id, .gguf, or packaged:smollm2. ChatGLM2 must be the native (GlmForCausalLM) conversion."},
    )
    finetuning: str = field(default="lora", metadata={"help": "lora (trainable low-rank matrices on a frozen base) or full (every weight)."})
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
    init_adapter: str = field(default="", metadata={"help": "LoRA: start from this trained adapter folder instead of fresh matrices."})
    cache_dir: str = field(default="outputs/cache", metadata={"help": "Where a GGUF base is de-quantised once so it can be loaded in 4-bit and trained."})

    def __post_init__(self):
        if self.finetuning not in ("lora", "full"):
            raise UserError(f"--finetuning must be lora or full, got {self.finetuning!r}")
        if self.finetuning == "full" and self.load_in_4bit:
            raise UserError("--finetuning full trains every weight, which 4-bit weights cannot be: add --load_in_4bit false")
        if self.lora_r < 1:
            raise UserError("--lora_r must be >= 1")


@dataclass
class GenerationEvalArguments:
    """The final judging: ROUGE/BLEU, loop rate and distinct-2 of base and tuned answers."""

    generate_eval_samples: int = field(
        default=0,
        metadata={"help": "Judge this many (seeded) records at the end: of validation_file with --carve_validation, else of the "
                  "records the loss is measured on (as before); 0 = skip."},
    )
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    metric_tokens: str = field(default="jieba", metadata={"help": "ROUGE/BLEU/distinct-2 units for Chinese: jieba (words) or char."})
    answers_cache_dir: str = field(
        default="outputs/cache/answers",
        metadata={"help": "Keep answers here, keyed by model weights, prompts and settings, so a rerun does not generate them "
                  "again; empty = no cache."},
    )

    def __post_init__(self):
        if self.metric_tokens not in ("jieba", "char"):
            raise UserError("--metric_tokens must be jieba or char")
        if self.generate_eval_samples < 0 or self.generation_batch_size < 1:
            raise UserError("--generate_eval_samples must be >= 0 and --generation_batch_size >= 1")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    from transformers import TrainingArguments

    return (ModelArguments, SftDataArguments, GenerationEvalArguments, GenerationOverrides, DecodingSearchArguments, TrainingArguments,
            ResultArguments, MedicalDataArguments)


@dataclass
class Run:
    """Everything one invocation was asked to do, parsed."""

    model: ModelArguments
    data: SftDataArguments
    gen: GenerationEvalArguments
    overrides: GenerationOverrides
    search: DecodingSearchArguments
    training: Any
    result: ResultArguments
    med: MedicalDataArguments
    config: dict


@run_main
def main(argv=None, extra_callbacks=None):
    run = Run(*parse_args(argument_types(), argv))
    with capture_log(None) as log:
        return _main(run, log, extra_callbacks)


def _main(run: Run, log, extra_callbacks):
    from transformers import set_seed

    set_seed(run.training.seed)
    print(f"torch threads: {set_torch_threads()}")  # one per physical core unless OMP_NUM_THREADS says otherwise
    run.training = dataclasses.replace(run.training, **precision_flags(run.model.mixed_precision))
    precision = ("4-bit NF4 weights, " if run.model.load_in_4bit else "full-precision weights, ") + precision_label(run.model.mixed_precision)
    print(f"precision: {precision}")
    # What the judging starts from: the base model's generation defaults and the explicit flags;
    # candidates are checked now, so a typo fails before hours of training.
    judging = run.overrides.apply(resolve_generation_defaults(run.model.model_name_or_path))
    candidates = run.search.parsed(judging)
    if candidates and not run.data.carve_validation:
        raise UserError("--decoding_candidates need --carve_validation: settings are chosen on held-out training records, "
                        "never on validation_file, which is judged at the end")

    data = load_data(run)  # data first: a broken file should fail in a second, not after loading a 6B model
    settings = run_settings(run.model, run.data, training_args=run.training)
    resume = resolve_resume(run.training, settings)  # refuses a checkpoint of a run with other settings
    if resume:
        print(f"resuming from {resume}", flush=True)
    log = RunLog(resume, log)  # the result's log: every sitting's, as checkpoints carry it
    # A GGUF base is de-quantised once into safetensors: transformers neither loads a GGUF file in
    # 4-bit nor trains a model it loaded from one (it counts as "quantized with GGUF").
    model_path = quantizable_model_path(run.model.model_name_or_path, run.model.cache_dir)
    tokenizer, train_data, loss_data, max_length, lengths = encode_data(run, data, model_path)
    model, weight_dtype, n_4bit = build_model(run, model_path)
    callbacks = [*(extra_callbacks or []), *answer_match_callbacks(run.med, tokenizer, data, run.training.seed)]
    trainer = build_trainer(run, model, tokenizer, train_data, loss_data, callbacks)

    metrics: dict = {"n_train": len(train_data), "n_eval": len(loss_data), "n_carved": len(data["carved"]), "max_length": max_length,
                     "quantized_linear_layers": n_4bit}
    with base_weights(model, run.model):  # the base model = the adapter switched off, or (full) before training
        metrics["eval_loss_base"] = trainer.evaluate()["eval_loss"]
    print(f"validation loss of the base model: {metrics['eval_loss_base']:.4f}")
    train_seconds = train(trainer, resume, settings, run, train_data, metrics, log)

    # Save at once: the tuned model is usable even if the judging below is interrupted.
    trainer.save_model(run.training.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(run.training.output_dir)
        if data["index"] is not None:  # chat and serving retrieve from the same records
            data["index"].save(run.training.output_dir, run.med)
    chosen, search_table, predictions = judge(run, data, model, tokenizer, model_path, weight_dtype, candidates, judging, metrics)
    if trainer.is_world_process_zero():
        report = {"train": data["train_report"].summary(), "validation": data["loss_report"].summary(),
                  "judged": data["judge_report"].summary(), "max_length": max_length, "train_length_stats": length_stats(lengths)}
        save_outputs(run, metrics, report, chosen, search_table, predictions, data["judge"], precision, train_seconds, log)
    return metrics


def load_data(run: Run) -> dict[str, Any]:
    """Train, loss, search and judged records, each with its report. Without a carve, validation_file
    serves for the loss and the judging alike (as before); with one, it is only judged."""
    d, seed = run.data, run.data.subset_seed
    train_convs, train_report = load_conversations(d.train_file, "train", d.system_prompt)
    valid_convs, valid_report = load_conversations(d.validation_file, "validation", d.system_prompt)
    train_convs, valid_convs = clean_loaded(train_convs, train_report, run.med), clean_loaded(valid_convs, valid_report, run.med)
    train_convs, carved = carve(train_convs, d.carve_validation, seed)  # before any subset: the carve never moves
    train_convs = seeded_subset(train_convs, d.max_train_samples, seed)
    if carved:
        loss_convs = seeded_subset(carved, d.max_eval_samples, seed)
        loss_report = DataReport(source=f"{train_report.source} (carved: {len(carved)} records held out as validation)", read=len(carved))
        pool, judge_report = valid_convs, valid_report
    else:
        loss_convs, loss_report = seeded_subset(valid_convs, d.max_eval_samples, seed), valid_report
        pool, judge_report = loss_convs, DataReport(source=valid_report.source, read=valid_report.read)
    n_judge = run.gen.generate_eval_samples
    judge_convs = seeded_subset(pool, n_judge, seed) if n_judge else []
    judge_report.kept = len(judge_convs)
    search_convs = seeded_subset(carved, run.search.decoding_search_samples, seed) if carved and run.search.decoding_candidates else []
    print(f"records: {len(train_convs)} to train on, {len(loss_convs)} for the validation loss, {len(search_convs)} for the decoding "
          f"search, {len(judge_convs)} judged at the end ({judge_report.source})", flush=True)
    data = {"train": train_convs, "loss": loss_convs, "carved": carved, "search": search_convs, "judge": judge_convs,
            "train_report": train_report, "loss_report": loss_report, "judge_report": judge_report}
    data["index"] = ground_all(data, run.med)  # retrieved records into every prompt (--retrieval_k), from the records trained on
    return data


def encode_data(run: Run, data: dict, model_path: str):
    """Tokenizer (the model's own chat template), encoded train/loss sets (loss on the answer + EOS
    only) and the length budget chosen from the training lengths."""
    from transformers import AutoConfig

    from imdb_llm.llm.loading import config_context_length, load_tokenizer

    tokenizer = apply_template_override(load_tokenizer(model_path), run.data.chat_template)
    for conv in data["train"] + data["loss"]:
        conv["_enc"] = encode_conversation(tokenizer, conv["messages"])
    if run.med.preference_weight:  # a near-miss answer beside each training answer
        print(f"preference pairs: {attach_rejected(tokenizer, data['train'], run.med, run.data.subset_seed)} of {len(data['train'])}")
    lengths = [len(c["_enc"]["input_ids"]) for c in data["train"]]
    model_config = AutoConfig.from_pretrained(model_path) if not model_path.startswith("packaged:") else None
    cap = config_context_length(model_config) if model_config is not None else None
    max_length = run.data.max_length or choose_max_length(lengths, run.data.max_length_percentile, cap=cap)
    print(f"train token lengths {length_stats(lengths)} -> max_length {max_length}"
          f"{'' if run.data.max_length else f' (p{run.data.max_length_percentile:g} of the data)'}")
    train_data = ListDataset(encode_dataset(tokenizer, data["train"], data["train_report"], max_length))
    loss_data = ListDataset(encode_dataset(tokenizer, data["loss"], data["loss_report"], max_length))
    print(data["train_report"].describe())
    print(data["loss_report"].describe())
    return tokenizer, train_data, loss_data, max_length, lengths


def build_model(run: Run, model_path: str):
    """The model to train: LoRA on a 4-bit or full-precision base, or every weight (full).
    Returns ``(model, weight_dtype, number of 4-bit layers)``."""
    from imdb_llm.llm.loading import load_causal_lm

    m, training_args = run.model, run.training
    device_map = {"": training_args.local_process_index} if is_cuda() else None  # one full copy per process under DDP
    # Weights: 4-bit (bf16 compute) for QLoRA; bf16 for LoRA on a GPU; else fp32 (on a CPU bf16 is
    # autocast: the weights and optimizer stay exact, the matmuls run in bf16; full fine-tuning
    # keeps fp32 master weights everywhere).
    lora_bf16 = m.finetuning == "lora" and (m.load_in_4bit or is_cuda() or run.med.lora_bf16_base)
    weight_dtype = "bfloat16" if training_args.bf16 and lora_bf16 else "float32"
    model = load_causal_lm(model_path, load_in_4bit=m.load_in_4bit, dtype=weight_dtype, device_map=device_map,
                           attn_implementation=m.attn_implementation)
    model.config.use_cache = False  # the KV cache is for generation; it also disables packed-sequence masks
    if training_args.gradient_checkpointing:
        training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if m.finetuning == "full":
        if run.med.freeze_embeddings:  # a 262k x 640 table (Gemma 3) is 63 % of the weights: no gradient, no optimizer state
            model.get_input_embeddings().weight.requires_grad_(False)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"full fine-tuning: {n:,} parameters trainable")
        return model, weight_dtype, 0
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if m.load_in_4bit:
        # Norms / embeddings to fp32 and input grads on, so checkpointed layers get gradients.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=training_args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = m.lora_target_modules
    lora = LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")])
    model = PeftModel.from_pretrained(model, m.init_adapter, is_trainable=True) if m.init_adapter else get_peft_model(model, lora)
    # Before any evaluation: on CPUs with AVX512-BF16, bitsandbytes would otherwise repack the 4-bit
    # weights for inference during the base-model evaluation and training would then fail.
    n_4bit = keep_4bit_trainable(model)
    model.print_trainable_parameters()
    return model, weight_dtype, n_4bit


def build_trainer(run: Run, model, tokenizer, train_data, loss_data, extra_callbacks):
    import torch
    from transformers import Trainer

    from imdb_llm.llm.med.preference import PreferenceCollator, PreferenceTrainer
    from imdb_llm.llm.sft.answer_loss import AnswerOnlyLossTrainer

    training_args = run.training
    # Paged 8-bit AdamW pages optimizer state to host RAM under memory pressure; it is a CUDA
    # feature. bitsandbytes' CPU backend runs it too, but say so if we ever have to switch.
    if "paged" in training_args.optim and not is_cuda():
        try:
            import bitsandbytes as bnb

            bnb.optim.PagedAdamW8bit([torch.nn.Parameter(torch.zeros(4))], lr=1e-3).step()
        except Exception as exc:  # noqa: BLE001
            print(f"optimizer {training_args.optim} unavailable without CUDA ({type(exc).__name__}); using adamw_torch")
            training_args.optim = "adamw_torch"
    collator = PackingCollator() if run.data.packing else PadCollator(tokenizer.pad_token_id)
    trainer_class, extra = AnswerOnlyLossTrainer if run.med.answer_only_logits else Trainer, {}
    if run.med.preference_weight:
        trainer_class, collator, extra = PreferenceTrainer, PreferenceCollator(tokenizer.pad_token_id), {"preference": run.med}
    return trainer_class(model=model, args=training_args, train_dataset=train_data, eval_dataset=loss_data, data_collator=collator,
                         processing_class=tokenizer, callbacks=[ProgressLine(), *(extra_callbacks or [])], **extra)


@contextlib.contextmanager
def base_weights(model, model_args: ModelArguments):
    """``model`` computing as the base model: the adapter switched off; under full fine-tuning the
    model itself, which is the base only until it trains."""
    with model.disable_adapter() if model_args.finetuning == "lora" else contextlib.nullcontext():
        yield model


def train(trainer, resume, settings, run: Run, train_data, metrics, log: RunLog) -> float:
    """Train (resumable: checkpoints hold weights, optimizer, scheduler, RNG, data position, time and log) and
    record the validation losses; with ``load_best_model_at_end`` the best evaluated checkpoint is
    the one kept, which chooses the training length on the carved validation. Returns the seconds
    trained over every part of the run."""
    start_step = int(resume.rstrip("/").rsplit("-", 1)[1]) if resume else 0
    clock = TrainClock(resume)  # train_seconds adds up across interruptions
    trainer.add_callback(clock)
    trainer.add_callback(SettingsRecord(settings))
    trainer.add_callback(log)
    out, segment = timed_train(trainer, resume)
    args, state = run.training, trainer.state
    metrics.update({"train_seconds_this_process": round(segment, 1), "train_loss": out.training_loss, "global_step": out.global_step,
                    "resumed_from_step": start_step})
    # Tokens/s over the real (unpadded) tokens of the samples this process trained on.
    samples = (out.global_step - start_step) * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    mean_tokens = sum(len(x["input_ids"]) for x in train_data.items) / len(train_data)
    metrics["train_tokens_per_second"] = round(samples * mean_tokens / segment, 1) if segment > 0 else None
    history = [{"step": e["step"], "epoch": round(e.get("epoch", 0), 3), "eval_loss": round(e["eval_loss"], 4)}
               for e in state.log_history if "eval_loss" in e and e.get("step", 0) > 0]
    if history:
        metrics["eval_loss_history"] = history
    if args.load_best_model_at_end and state.best_model_checkpoint:
        metrics["chosen_step"] = int(state.best_model_checkpoint.rstrip("/").rsplit("-", 1)[1])
        metrics["chosen_epoch"] = next((h["epoch"] for h in history if h["step"] == metrics["chosen_step"]), None)
        # The loss of the weights now loaded (best_metric is the choosing metric, which need not be the loss).
        metrics["eval_loss"] = next((h["eval_loss"] for h in history if h["step"] == metrics["chosen_step"]), None)
        metrics[f"chosen_{args.metric_for_best_model}"] = float(state.best_metric)
    else:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    print(f"validation loss after training: {metrics['eval_loss']:.4f}")
    # Every part of the run, in the summary too: scripts/tune_recipe.py adds up its variants' times from it.
    metrics["train_seconds"] = round(clock.before + segment, 1)
    return clock.before + segment


def judge(run: Run, data, model, tokenizer, model_path, weight_dtype, candidates, judging, metrics):
    """Choose the decoding on the carved validation (when asked), then judge base and tuned model
    on the held-out records with the chosen settings. Returns ``(chosen, search table, predictions)``.

    Answers are generated by a bf16 copy where training runs in bf16 autocast on a CPU: decoding is
    many small matmuls, and the copy measured 1.7x the fp32 model. All answers are cached, keyed by
    the weights (:func:`weights_digest` for the tuned model), so a rerun after a stop skips them."""
    gen, bs, seed = run.gen, run.gen.generation_batch_size, run.training.seed
    gen_dtype = "bfloat16" if run.training.bf16 and not is_cuda() and weight_dtype == "float32" else weight_dtype
    metrics["generation_dtype"] = gen_dtype
    base_id = f"{model_fingerprint(model_path)}|4bit={run.model.load_in_4bit}|{weight_dtype}|generate={gen_dtype}"
    chosen, table, predictions = judging, [], {}
    if not (candidates or data["judge"]):
        return chosen, table, predictions
    tuned_id = f"{base_id}|{run.model.finetuning}={weights_digest(model)}"
    with generation_copy(model, gen_dtype) as gen_model:
        def tuned(convs, settings):
            return cached_answers(gen.answers_cache_dir, tuned_id, gen_model, tokenizer, convs, settings, bs, seed)[0]

        if candidates:
            metrics["n_search"] = len(data["search"])
            chosen, table = choose_decoding(lambda s: tuned(data["search"], s), candidates, _refs(data["search"]), gen.metric_tokens,
                                            run.search.max_loop_rate)
        if data["judge"]:
            convs, refs = data["judge"], _refs(data["judge"])
            with base_model(gen_model, run.model, model_path, gen_dtype) as base:  # the same decoding as the tuned model
                predictions["base"], metrics["base_answers_cached"] = cached_answers(
                    gen.answers_cache_dir, base_id, base, tokenizer, convs, chosen, bs, seed)
            predictions["tuned"] = tuned(convs, chosen)
            metrics["n_judged"] = len(convs)
            for name in ("base", "tuned"):
                metrics.update({f"{name}_{k}": v for k, v in generation_metrics(predictions[name], refs, gen.metric_tokens).items()})
            metrics.update({f"reference_{k}": v for k, v in text_metrics(refs, gen.metric_tokens).items()})
    return chosen, table, predictions


@contextlib.contextmanager
def generation_copy(model, dtype: str):
    """``model`` itself when it already computes in ``dtype``, else a throw-away copy cast to it."""
    import torch

    same = next(model.parameters()).dtype == getattr(torch, dtype)
    yield model if same else deepcopy(model).to(getattr(torch, dtype))


@contextlib.contextmanager
def base_model(gen_model, model_args: ModelArguments, model_path: str, dtype: str):
    """The base model for answers: the generation copy with its adapter off, or (full fine-tuning)
    the base weights loaded again."""
    if model_args.finetuning == "lora":
        with gen_model.disable_adapter():
            yield gen_model
        return
    from imdb_llm.llm.loading import load_causal_lm

    yield load_causal_lm(model_path, dtype=dtype, device_map={"": 0} if is_cuda() else None, attn_implementation=model_args.attn_implementation)


def save_outputs(run: Run, metrics, report, chosen, search_table, predictions, judge_convs, precision, train_seconds, log) -> None:
    """The model's generation defaults, the data report, the metrics, predictions and the result file."""
    out = Path(run.training.output_dir)
    defaults_file = chosen.save(out)
    print(f"generation defaults ({chosen.source}) -> {defaults_file}")
    atomic_write_text(out / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    atomic_write_text(out / "sft_results.json", json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    if predictions:
        write_predictions(out / "predictions.jsonl", judge_convs, predictions)
    if not run.result.results_name:
        return
    if predictions:
        write_predictions(Path(run.result.results_dir) / f"{run.result.results_name}.predictions.jsonl", judge_convs, predictions)
    m = run.model
    method = {"full": "full fine-tuning", "lora": "QLoRA (4-bit NF4 base + LoRA)" if m.load_in_4bit else "LoRA (full-precision base)"}[m.finetuning]
    extra = {"data": report, "method": method, "precision": precision, "metric_tokens": run.gen.metric_tokens,
             "loss_and_choices_on": "carved from train" if metrics["n_carved"] else "validation_file",
             "generation_defaults": {**chosen.to_dict(), "source": chosen.source}}
    if m.finetuning == "lora":
        extra["lora"] = {k: v for k, v in asdict(m).items() if k.startswith("lora")}
    if search_table:
        extra["decoding_search"] = {"samples": metrics.get("n_search"), "max_loop_rate": run.search.max_loop_rate, "candidates": search_table}
    write_result(run.result.results_name, metrics, headline="generation", config=run.config, train_seconds=train_seconds, log_text=log.getvalue(),
                 results_dir=run.result.results_dir, extra=extra)


def _refs(convs):
    return [c["messages"][-1]["content"] for c in convs]


if __name__ == "__main__":
    main()
