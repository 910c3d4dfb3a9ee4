"""The two stages of a from-scratch BERT / GPT-2 run (``scripts/run_scratch.py``): masked or causal
language modelling on IMDB text (stage 1, ``output_dir/pretrain``), then classification from those
weights, optionally distilled from a teacher (stage 2, ``output_dir/classify``). Each stage resumes
from its last complete checkpoint and is skipped once finished (:mod:`imdb_llm.resume`)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets
from transformers import DataCollatorForLanguageModeling, Trainer

from imdb_llm.benchmark import benchmark_precision, global_batch, write_benchmark_results
from imdb_llm.cli import UserError
from imdb_llm.imdb.data import pretraining_texts
from imdb_llm.imdb.distill import HELD_OUT, SoftLabelCollator, attach_teacher, distillation_sets, distillation_trainer_class, soft_targets
from imdb_llm.imdb.embeddings import table_provenance
from imdb_llm.imdb.scratch import ThroughputCallback, build_classifier, build_pretraining_model, pack_dataset, stock_architecture
from imdb_llm.imdb.text import encode_head_tail
from imdb_llm.imdb.tokenized_cache import tokenize_cached
from imdb_llm.imdb.training import compute_metrics, count_parameters, finish_classification_run, trained_tokens
from imdb_llm.results import atomic_folder, read_json, write_json_atomic
from imdb_llm.resume import TrainClock, finished_stage, last_complete_checkpoint, mark_stage_finished, timed_train

_IMPORTED = time.time()
logger = logging.getLogger("run_scratch")
PRETRAIN_DONE = "pretrain_metrics.json"  # written last in output_dir/pretrain/final: the stage is complete
STAGES = ("pretrain", "classify")
# Settings that change what a stage computes: a rerun with different values must not resume old checkpoints.
RUN_IDENTITY = ("model_args", "scratch_args", "data_args")


def precision_from_flags(training_args) -> str:
    """The --mixed_precision choice the bf16/fp16 flags amount to (for the result's ``precision``)."""
    return "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no"


def finished_pretraining(folder: str, model_args) -> dict:
    """The stage-1 metrics of a finished pretraining run (its seconds and tokens count in this run's),
    after checking its architecture is the one this config describes."""
    metrics, saved = finished_stage(folder, PRETRAIN_DONE), read_json(Path(folder, "config.json"))
    if metrics is None or saved is None:
        raise UserError(f"--pretrained_model {folder}: not a finished stage-1 folder (no {PRETRAIN_DONE}); run its pretraining target first")
    expected = {"model_type": model_args.model_type, "hidden_size": model_args.hidden_size, "num_hidden_layers": model_args.num_hidden_layers}
    found = {"model_type": saved.get("model_type"), "hidden_size": saved.get("hidden_size", saved.get("n_embd")),
             "num_hidden_layers": saved.get("num_hidden_layers", saved.get("n_layer"))}
    if found != expected:
        raise UserError(f"--pretrained_model {folder} is {found}, but this config describes {expected}")
    if "embedding_init" in metrics and metrics["embedding_init"] != model_args.embedding_init:
        raise UserError(f"--pretrained_model {folder} started from embeddings {metrics['embedding_init']}, but this config says --embedding_init {model_args.embedding_init}")
    return metrics


def embedding_init_metrics(model_args) -> dict:
    """Which word vectors the embeddings started from, and the seconds it took to train them (part
    of every run that starts there). A stage-1 folder carries these on to the runs it starts."""
    if not model_args.embedding_init:
        return {"embedding_init": None, "embedding_init_seconds": 0.0}
    return {"embedding_init": model_args.embedding_init, "embedding_init_seconds": float(table_provenance(model_args.embedding_init).get("seconds") or 0.0)}


def pretraining_args(training_args, scratch_args, stage_dir: Path):
    """Stage 2's TrainingArguments (precision, compile, seed, logging) with stage-1 hyperparameters."""
    return dataclasses.replace(
        training_args,
        output_dir=str(stage_dir),
        max_steps=scratch_args.pretrain_max_steps,
        per_device_train_batch_size=scratch_args.pretrain_batch_size,
        per_device_eval_batch_size=scratch_args.pretrain_batch_size,
        learning_rate=scratch_args.pretrain_learning_rate,
        warmup_steps=scratch_args.pretrain_warmup_steps,
        weight_decay=scratch_args.pretrain_weight_decay,
        lr_scheduler_type=scratch_args.pretrain_lr_scheduler_type,
        save_strategy="steps",
        save_steps=scratch_args.pretrain_save_steps,
        save_total_limit=2,
        logging_steps=scratch_args.pretrain_logging_steps,
        eval_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        dataloader_drop_last=True,
        train_sampling_strategy="random",  # blocks all have the same length
    )


def benchmark_pretraining_precision(model_args, scratch_args, bench_args, training_args, result_args, tokenizer, dsets, config, log_buffer) -> None:
    """Stage 1's training speed in fp32 vs bf16 autocast, same model initialisation, same blocks and
    masks: pretraining is where a scratch run spends its time. Written as its own result,
    ``<results_name>-precision-bench``; no model is saved."""
    needed = (bench_args.benchmark_warmup_steps + bench_args.benchmark_precision_steps) * scratch_args.pretrain_batch_size * max(1, training_args.world_size)
    texts = pretraining_texts(dsets)
    # About 2 blocks per review at 128 tokens: read only as many reviews as the timed steps need.
    texts = texts.select(range(min(len(texts), needed)))
    blocks = pack_dataset(texts, tokenizer, scratch_args.block_size, scratch_args.preprocessing_num_workers)
    model = build_pretraining_model(model_args, tokenizer)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=model_args.model_type == "bert", mlm_probability=scratch_args.mlm_probability)
    with tempfile.TemporaryDirectory() as tmp:
        args = pretraining_args(training_args, scratch_args, Path(tmp))
        figures = benchmark_precision(lambda: copy.deepcopy(model), blocks, args, collator, steps=bench_args.benchmark_precision_steps,
                                      warmup_steps=bench_args.benchmark_warmup_steps, sampling="random")
    figures = {"bench_stage": "pretraining", "bench_block_size": scratch_args.block_size, **figures}
    logger.info("precision benchmark: %s", figures)
    if training_args.process_index == 0:
        write_benchmark_results({"precision": figures}, results_name=result_args.results_name, result_args=result_args, config=config,
                                log=log_buffer, fields={"objective": "mlm" if model_args.model_type == "bert" else "clm"}, parameters=count_parameters(model))


def pretrain(model_args, scratch_args, training_args, tokenizer, dsets, output_dir: Path, cache_dir: str | None = None) -> dict:
    """Masked (BERT) or causal (GPT-2) language modelling on IMDB text; returns its metrics."""
    stage_dir = output_dir / "pretrain"
    bert = model_args.model_type == "bert"
    with training_args.main_process_first(desc="tokenize pretraining text"):
        # Train (minus the validation reviews) + the 50k unlabelled reviews, less any review whose
        # text is also a validation or test review. Never test.
        train_blocks = pack_dataset(pretraining_texts(dsets, drop_texts_of=HELD_OUT), tokenizer, scratch_args.block_size, scratch_args.preprocessing_num_workers, cache_dir=cache_dir)
        eval_blocks = None
        if scratch_args.pretrain_eval_blocks and len(dsets["validation"]):
            eval_blocks = pack_dataset(dsets["validation"].select_columns(["text"]), tokenizer, scratch_args.block_size, scratch_args.preprocessing_num_workers,
                                       desc="validation text", cache_dir=cache_dir)
            eval_blocks = eval_blocks.select(range(min(scratch_args.pretrain_eval_blocks, len(eval_blocks)))) if len(eval_blocks) else None
    if len(train_blocks) == 0:
        raise UserError(f"no pretraining block of {scratch_args.block_size} tokens: too little text")

    model = build_pretraining_model(model_args, tokenizer)
    logger.info("Stage 1: %s with %.1fM parameters, %d blocks of %d tokens", type(model).__name__, count_parameters(model) / 1e6, len(train_blocks), scratch_args.block_size)
    # The standard collator: BERT masks 15% of tokens (80% [MASK], 10% random, 10% kept) and
    # labels only those; GPT-2's labels are the inputs (the model shifts them by one).
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=bert, mlm_probability=scratch_args.mlm_probability)
    args = pretraining_args(training_args, scratch_args, stage_dir)
    meter = ThroughputCallback.for_blocks(scratch_args.block_size, args, max_seconds=scratch_args.pretrain_max_seconds)
    resume = last_complete_checkpoint(stage_dir)
    clock = TrainClock(resume)  # checkpoints carry the time so far: a resumed stage reports all of it
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks, data_collator=collator, processing_class=tokenizer,
                      callbacks=[meter, clock])
    if resume:
        logger.info("Stage 1: resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)

    metrics = {"pretrain_objective": "mlm" if bert else "clm", "pretrain_steps": trainer.state.global_step, "pretrain_block_size": scratch_args.block_size,
               **embedding_init_metrics(model_args), **meter.metrics("pretrain")}
    # Whole-stage figures, over every session that worked on it (meter's are this session's).
    seconds = clock.before + meter.seconds
    metrics.update({"pretrain_seconds": round(seconds, 2), "pretrain_tokens": trainer.state.global_step * meter.tokens_per_step,
                    "pretrain_tokens_per_second": round(trainer.state.global_step * meter.tokens_per_step / seconds, 1) if seconds > 0 else None,
                    "pretrain_corpus_tokens": len(train_blocks) * scratch_args.block_size,
                    "pretrain_loss_curve": [[h["step"], round(h["loss"], 4)] for h in trainer.state.log_history if "loss" in h]})
    train_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if train_losses:
        metrics["pretrain_final_train_loss"] = train_losses[-1]
    if eval_blocks is not None:
        import math

        # Training drops a ragged last batch (fixed shapes for torch.compile); evaluation must not, or
        # fewer eval blocks than one batch would give no loss at all.
        # (Set in place: replacing TrainingArguments would reset the accelerator state mid-run.)
        trainer.args.dataloader_drop_last = False
        eval_loss = trainer.evaluate(metric_key_prefix="pretrain_eval")["pretrain_eval_loss"]
        metrics.update({"pretrain_eval_loss": eval_loss, "pretrain_eval_perplexity": math.exp(min(eval_loss, 50))})
    logger.info("Stage 1 done: %s", metrics)

    final_dir = stage_dir / "final"
    if trainer.is_world_process_zero():
        with atomic_folder(final_dir) as tmp:  # a kill mid-save leaves no half-written final/
            trainer.save_model(str(tmp))
            saved_config = read_json(tmp / "config.json")
            saved_config["architectures"] = [stock_architecture(model_args.model_type)]  # loadable without our code
            write_json_atomic(tmp / "config.json", saved_config)
            mark_stage_finished(tmp, PRETRAIN_DONE, metrics)
    barrier()
    del trainer, model
    return metrics


def classify(model_args, scratch_args, training_args, result_args, tokenizer, dsets, output_dir, pretrained, pretrain_metrics, config, log_buffer, data_args=None,
             cache_dir=None, teacher=None, precision="fp32", started: float | None = None):
    """Stage 2: the classifier from the pretrained weights (or random ones), optionally distilled from
    the teacher, then the test split once; writes the result. ``started``: when the process started."""
    stage_dir = output_dir / "classify"
    if finished_stage(stage_dir, "all_results.json") is not None:  # finish_classification_run writes it
        logger.info("Stage 2 already complete (%s): nothing to do; --overwrite_output_dir true starts over", stage_dir / "all_results.json")
        return
    teacher_scores, teacher_meta = teacher if teacher is not None else (None, {})

    encoded, parts = classification_datasets(scratch_args, training_args, tokenizer, dsets, cache_dir, teacher_scores)
    model = build_classifier(model_args, tokenizer, pretrained)
    logger.info("Stage 2: %s with %.1fM parameters from %s, learning from %s%s", type(model).__name__, count_parameters(model) / 1e6, pretrained or "random init",
                ", ".join(f"{len(ds)} {split}" for split, ds in parts.items()), f" with teacher {teacher_meta.get('teacher')}" if teacher is not None else "")
    # average_tokens_across_devices rescales losses by the number of processes, which is right
    # for token-level LM losses but doubles a sequence classifier's (already averaged) loss under DDP.
    args = dataclasses.replace(training_args, output_dir=str(stage_dir), average_tokens_across_devices=False)
    if scratch_args.classify_torch_compile is False and training_args.torch_compile:
        # (a compile backend left set would switch compilation back on)
        args = dataclasses.replace(args, torch_compile=False, torch_compile_backend=None, torch_compile_mode=None)
    elif scratch_args.classify_torch_compile and not training_args.torch_compile:
        args = dataclasses.replace(args, torch_compile=True)
    if not len(encoded["validation"]):
        args = dataclasses.replace(args, eval_strategy="no", load_best_model_at_end=False)
    resume = last_complete_checkpoint(stage_dir)
    clock = TrainClock(resume)
    trainer_class, extra_args = (distillation_trainer_class(), {"temperature": scratch_args.distill_temperature}) if teacher is not None else (Trainer, {})
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"] if len(encoded["validation"]) else None,
        data_collator=SoftLabelCollator(tokenizer, pad_to_multiple_of=8),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[clock],
        **extra_args,
    )
    if resume:
        logger.info("Stage 2: resuming from %s", resume)
    _, session_seconds = timed_train(trainer, resume_from_checkpoint=resume)
    finetune_seconds = clock.before + session_seconds
    teacher_seconds = float(teacher_meta.get("scoring_seconds") or 0.0)
    # Real tokens the classifier trained on over all sessions of the stage.
    tokens = trained_tokens(encoded["train"], trainer.state.global_step * global_batch(args))
    extra = {
        "model_type": model_args.model_type,
        "precision": precision,
        "finetune_seconds": round(finetune_seconds, 2),
        "finetune_tokens": tokens,
        "finetune_tokens_per_second": round(tokens / finetune_seconds, 1) if finetune_seconds > 0 else None,
        "classify_max_seq_length": scratch_args.max_seq_length,
        "classify_head_tokens": scratch_args.head_tokens,
        "n_train_labelled": len(parts["train"]),
        "n_train_unlabelled": len(parts.get("unsupervised", ())),
        "teacher": teacher_meta.get("teacher"),
        "teacher_test_accuracy": teacher_meta.get("teacher_test_accuracy"),
        "teacher_scoring_seconds": teacher_seconds if teacher is not None else None,
        **(embedding_init_metrics(model_args) if pretrained is None else {}),  # else stage 1 says where its embeddings started
        **(pretrain_metrics or {}),
    }
    if len(encoded["validation"]):  # every process takes part in evaluate/predict
        final_eval = trainer.evaluate()
        extra.update({f"validation_{k[5:]}": v for k, v in final_eval.items() if k in ("eval_accuracy", "eval_f1", "eval_loss")})
    extra["run_seconds_before_test"] = round(time.time() - (started or _IMPORTED), 2)  # this process: start-up, data, both stages
    # All stages, every session: word vectors + pretraining + teacher scoring + fine-tuning.
    total_seconds = finetune_seconds + teacher_seconds + float((pretrain_metrics or {}).get("pretrain_seconds") or 0.0) + float(extra.get("embedding_init_seconds") or 0.0)
    metrics = finish_classification_run(
        trainer, encoded["test"], train_seconds=total_seconds, config=config, result_args=result_args, log_buffer=log_buffer, extra_metrics=extra,
        # the encoding drops every source column, ids included: hand them over from the unencoded splits
        validation_dataset=encoded["validation"], data_args=data_args,
        review_ids={split: dsets[split]["id"] for split in ("validation", "test")},
    )
    logger.info("Test: %s", {k: v for k, v in metrics.items() if k.startswith("test_")})


def classification_datasets(scratch_args, training_args, tokenizer, dsets, cache_dir, teacher_scores=None) -> tuple[dict, dict]:
    """Encoded ``validation``, ``test`` and ``train`` splits, and the parts ``train`` is made of.

    What the classifier learns from: train minus validation, less any text that is also a held-out
    review; with a teacher, the unlabelled reviews too, every review carrying the teacher's soft
    target (``soft_labels``)."""

    def encode(batch):
        # Whole-review context: the first head_tokens and the last (max_seq_length - head_tokens - 2) tokens.
        enc = encode_head_tail(tokenizer, batch["text"], scratch_args.max_seq_length, scratch_args.head_tokens)
        return {**enc, "labels": batch["label"] if "label" in batch else [-1] * len(batch["text"])}  # -1: an unlabelled review

    def encode_split(ds, name):
        return tokenize_cached(ds, encode, tokenizer=tokenizer, cache_dir=cache_dir, code=[encode_head_tail], name=name,
                               settings={"max_length": scratch_args.max_seq_length, "head_tokens": scratch_args.head_tokens, "labels": True},
                               remove_columns=ds.column_names, num_proc=scratch_args.preprocessing_num_workers, desc=f"encoding {name}")

    sources = distillation_sets(dsets, with_unlabelled=teacher_scores is not None and scratch_args.distill_unlabelled)
    with training_args.main_process_first(desc="tokenize labelled reviews"):
        encoded = {split: encode_split(dsets[split], split) for split in ("validation", "test")}
        parts = {split: encode_split(ds, f"{split}-trainable") for split, ds in sources.items()}
    if teacher_scores is not None:
        for split, ds in sources.items():
            logits = np.asarray(attach_teacher(ds, split, teacher_scores, scratch_args.teacher)["teacher_logit"])
            gold = np.asarray(ds["label"]) if "label" in ds.column_names else None
            parts[split] = parts[split].add_column("soft_labels", soft_targets(logits, gold, scratch_args.distill_alpha, scratch_args.distill_temperature).tolist())
    encoded["train"] = concatenate_datasets(list(parts.values()))
    return encoded, parts


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now, so ``capture_log``'s tee sees our messages."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(level: int) -> None:
    logger.setLevel(level)
    logger.propagate = False
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
