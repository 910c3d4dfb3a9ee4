#!/usr/bin/env python
"""BERT or GPT-2 built from a config, pretrained on IMDB text alone, then fine-tuned to classify.

    python scripts/run_scratch.py configs/scratch_bert.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/run_scratch.py configs/scratch_bert.yaml

Stage 1 (``output_dir/pretrain``): a randomly initialised ``BertForMaskedLM`` (masked LM) or
``GPT2LMHeadModel`` (causal LM) learns from IMDB train + unsupervised reviews, packed into blocks.
Stage 2 (``output_dir/classify``): ``BertForSequenceClassification`` / ``GPT2ForSequenceClassification``
starts from those weights and trains on the labelled train split, is evaluated on validation (carved
from train) during training and on the test split once at the end.

Both stages checkpoint. Run the same command again after a crash or a kill and it resumes from the
last complete checkpoint; a finished stage is skipped. Shaped like transformers'
examples/pytorch/language-modeling/run_mlm.py + text-classification/run_classification.py.
"""

from __future__ import annotations

import time

_STARTED = time.time()  # before the heavy imports: "whole run" time includes start-up

import dataclasses
import sys
import logging
import os
from pathlib import Path

from transformers import TrainingArguments, set_seed

from imdb_llm.benchmark import PrecisionBenchmarkArguments
from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.distill import read_teacher
from imdb_llm.imdb.scratch import ScratchArguments, ScratchModelArguments, check_arguments, read_word_vectors
from imdb_llm.imdb.scratch_run import (PRETRAIN_DONE, RUN_IDENTITY, STAGES, barrier, benchmark_pretraining_precision, classify, finished_pretraining,
                                       precision_from_flags, pretrain, setup_logging)
from imdb_llm.imdb.tokenization import load_tokenizer
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.results import ResultArguments, capture_log
from imdb_llm.resume import check_same_run, finished_stage, without_bookkeeping
from imdb_llm.threads import set_torch_threads

logger = logging.getLogger("run_scratch")


@dataclasses.dataclass
class RunArguments:
    overwrite_output_dir: bool = dataclasses.field(default=False, metadata={"help": "Delete both stages' checkpoints and start over."})
    mixed_precision: str | None = dataclasses.field(
        default=None, metadata={"help": "auto (bf16 autocast where the CPU/GPU has native bf16), bf16, fp16 or no; unset: the bf16/fp16 flags decide. "
                                         "Measure with --benchmark_precision_steps first."})


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (ScratchModelArguments, ScratchArguments, ImdbArguments, ResultArguments, RunArguments, PrecisionBenchmarkArguments, TrainingArguments)


@run_main
def main(argv=None):
    model_args, scratch_args, data_args, result_args, run_args, bench_args, training_args, config = parse_args(argument_types(), argv)
    check_arguments(model_args, scratch_args)
    bench_args.check()
    if run_args.mixed_precision is not None:
        training_args = dataclasses.replace(training_args, **precision_flags(run_args.mixed_precision))
    output_dir = Path(training_args.output_dir)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        # Without GPUs, accelerate's processes only join one CPU process group with use_cpu.
        raise UserError(f"launched as {launched} processes but training would run {training_args.world_size}: on a machine without GPUs add --use_cpu true")
    is_main = training_args.process_index == 0
    tokenizer = load_tokenizer(model_args.tokenizer_name)  # validate inputs before anything is written
    if tokenizer.pad_token_id is None or tokenizer.sep_token_id is None:
        raise UserError(f"{model_args.tokenizer_name}: the tokenizer needs [PAD] and [SEP] tokens (train it with `make imdb-tokenizer`)")
    teacher = read_teacher(scratch_args.teacher) if scratch_args.teacher else None  # a bad teacher file fails before any work
    if model_args.embedding_init:  # so does a missing or misshapen word-vector table
        read_word_vectors(model_args.embedding_init, len(tokenizer), model_args.hidden_size, mmap=True)
    with training_args.main_process_first(desc="load IMDB"):
        dsets = load_imdb(data_args, with_unsupervised=True)
    # Minus bookkeeping (where caches live, ...): it changes nothing a stage computes.
    identity = {g: without_bookkeeping(a) for g, a in zip(RUN_IDENTITY, (model_args, scratch_args, data_args))}
    identity["training_args"] = {"seed": training_args.seed}
    check_same_run(output_dir, identity, run_args.overwrite_output_dir, is_main, STAGES)
    barrier()  # (reading process_index above set up the distributed state)

    setup_logging(logging.INFO if is_main else logging.WARNING)
    cache_dir = resolve_cache_dir(data_args.tokenized_cache_dir, output_dir)
    with capture_log(output_dir / "run.log" if is_main else None) as log_buffer:
        set_seed(training_args.seed)
        logger.info("torch threads: %d", set_torch_threads())  # one per physical core unless OMP_NUM_THREADS says otherwise
        logger.info("IMDB: %s", {k: len(v) for k, v in dsets.items()})
        if bench_args.benchmark_precision_steps > 0:
            benchmark_pretraining_precision(model_args, scratch_args, bench_args, training_args, result_args, tokenizer, dsets, config, log_buffer)
            if bench_args.benchmark_only:
                return

        # ---------------------------------------------------------------- stage 1: pretraining
        final_dir = output_dir / "pretrain" / "final"
        pretrain_metrics = finished_stage(final_dir, PRETRAIN_DONE)
        if scratch_args.pretrained_model:
            pretrained, pretrain_metrics = scratch_args.pretrained_model, finished_pretraining(scratch_args.pretrained_model, model_args)
            logger.info("Stage 1 done elsewhere: starting from %s (%s)", pretrained, pretrain_metrics.get("pretrain_tokens"))
        elif scratch_args.pretrain_max_steps == 0:
            pretrained, pretrain_metrics = None, {"pretrain_steps": 0, "pretrain_tokens": 0, "pretrain_seconds": 0.0}
            logger.info("No pretraining (--pretrain_max_steps 0): the classifier starts from random weights%s", f" and the embeddings from {model_args.embedding_init}" if model_args.embedding_init else "")
        elif pretrain_metrics is not None:
            pretrained = str(final_dir)
            logger.info("Stage 1 already complete (%s): skipped", final_dir)
        else:
            pretrain_metrics = pretrain(model_args, scratch_args, training_args, tokenizer, dsets, output_dir, cache_dir)
            pretrained = str(final_dir)
        if scratch_args.pretrain_only:
            logger.info("Stage 1 only (--pretrain_only): %s", {k: v for k, v in pretrain_metrics.items() if k in ("pretrain_tokens", "pretrain_seconds", "pretrain_eval_perplexity")})
            return

        # ------------------------------------------------------------- stage 2: classification
        classify(model_args, scratch_args, training_args, result_args, tokenizer, dsets, output_dir, pretrained, pretrain_metrics, config, log_buffer, data_args,
                 cache_dir, teacher, precision_label(run_args.mixed_precision or precision_from_flags(training_args)), started=_STARTED)


if __name__ == "__main__":
    sys.exit(main())
