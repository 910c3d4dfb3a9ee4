#!/usr/bin/env python
"""Classify IMDB reviews with two language models, one per class: Bayes' rule instead of a classifier head.

    python scripts/train_lm_bayes.py configs/imdb_lm_bayes.yaml [--key value ...]   (make imdb-lm-bayes, after make imdb-lstm-lm)

A generative classifier: fine-tune one copy of the IMDB-pretrained LSTM LM (make imdb-lstm-lm) on the
negative training reviews and one on the positive ones, then call a review positive when the
positive LM finds it more likely:

    log P(pos | x) / P(neg | x) = log p_pos(x) - log p_neg(x) + log P(pos) / P(neg)

Mesnil et al. (2014) put this (an RNN-LM per class) into their IMDB ensemble beside NBSVM and
paragraph vectors: it scores every word of a review in order, where the others see a bag of
n-grams or one pooled vector. Here each review's log p(x) is the mean of the forward and the
backward LM's estimates (imdb_llm.imdb.models.lstm_lm). Neither the pretraining nor the fine-tuning reads
a validation or test review; the validation scores are for the ensemble to fit weights on.

Each class LM trains in ``output_dir/<class>`` with its own checkpoints: the same command resumes a
killed run, and a finished class LM is reused when its settings match (refused when they do not).
Under several processes (accelerate launch) both fine-tunings are distributed; the scoring, which is
inference only, runs on the main process.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from transformers import Trainer, TrainingArguments

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.models.lstm_lm import BiLSTMLanguageModel, load_language_model
from imdb_llm.probs import split_provenance, write_result_and_probs
from imdb_llm.imdb.scratch import ThroughputCallback, pack_dataset, stack_blocks
from imdb_llm.imdb.tokenization import load_tokenizer
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir, tokenize_cached
from imdb_llm.imdb.training import classification_metrics
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.results import ResultArguments, read_json, write_json_atomic
from imdb_llm.resume import SETTINGS_FILE, SettingsRecord, TrainClock, changed_settings, finished_stage, mark_stage_finished, resolve_resume, run_settings
from imdb_llm.threads import training_session

CLASSES = ("neg", "pos")  # label 0, label 1


@dataclass
class LMBayesArguments:
    init_from_lm: str = field(default="outputs/imdb-lstm-lm", metadata={"help": "The pretrained LM both class LMs start from (make imdb-lstm-lm)."})
    block_size: int = field(default=256, metadata={"help": "Tokens per fine-tuning block (one class's reviews concatenated)."})
    max_length: int = field(default=1024, metadata={"help": "Tokens of each review scored (its head); the rest is not read."})
    score_batch_size: int = field(default=32, metadata={"help": "Reviews per scoring batch (sorted by length, so little padding)."})
    mixed_precision: str = field(default="auto", metadata={"help": "Fine-tuning: no (fp32), auto (bf16 autocast where native), bf16 or fp16. "
                                                              "Scoring is fp32: a review's score sums hundreds of log-probabilities."})


def fine_tune_class_lm(name: str, label: int, start: BiLSTMLanguageModel, dsets, tokenizer, args: LMBayesArguments, training_args, settings: dict,
                       cache_dir) -> tuple[BiLSTMLanguageModel, dict]:
    """One class's LM: a copy of the pretrained LM ``start`` trained further on that class's training reviews only.
    A finished one (its model and settings in ``output_dir/<name>``) is loaded instead of retrained."""
    out = Path(training_args.output_dir, name)
    finished = finished_stage(out, SETTINGS_FILE)  # the marker is the settings, written last
    if (out / "model.safetensors").is_file() and finished is not None:
        shown = changed_settings(finished, settings)
        if shown:
            raise UserError(f"{out} holds a {name} LM trained with other settings ({shown}); give another --output_dir")
        print(f"{name} LM: finished before, loaded from {out}")
        return BiLSTMLanguageModel.from_pretrained(out), read_json(out / "class_lm_metrics.json")

    train_text = dsets["train"].filter(lambda y: y == label, input_columns="label").select_columns(["text"])
    eval_text = dsets["validation"].filter(lambda y: y == label, input_columns="label").select_columns(["text"])
    with training_args.main_process_first(desc="pack"):
        blocks = pack_dataset(train_text, tokenizer, args.block_size, cache_dir=cache_dir, desc=f"{name} training text")
        eval_blocks = pack_dataset(eval_text, tokenizer, args.block_size, cache_dir=cache_dir, desc=f"{name} validation text") if len(eval_text) else None
    if len(blocks) == 0:
        raise UserError(f"no {name} training blocks: the {name} reviews are shorter than one block of {args.block_size} tokens")
    print(f"{name} LM: {len(train_text)} reviews -> {len(blocks)} blocks of {args.block_size} tokens")

    model = copy.deepcopy(start)
    class_args = dataclasses.replace(training_args, output_dir=str(out), resume_from_checkpoint="auto")
    throughput = ThroughputCallback.for_blocks(args.block_size, class_args)
    resume = resolve_resume(class_args, settings)
    clock = TrainClock(resume)
    trainer = Trainer(model=model, args=class_args, train_dataset=blocks, eval_dataset=eval_blocks, data_collator=stack_blocks,
                      callbacks=[throughput, SettingsRecord(settings), clock])
    if resume:
        print(f"{name} LM: resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    metrics = {"train_seconds": round(clock.seconds(), 2), "corpus_tokens": len(blocks) * args.block_size,
               **throughput.metrics(prefix="")}
    if eval_blocks is not None:
        loss = trainer.evaluate()["eval_loss"]
        metrics["validation_perplexity_own_class"] = round(math.exp(loss), 2)
    if trainer.is_world_process_zero():
        trainer.save_model(str(out))
        write_json_atomic(out / "class_lm_metrics.json", metrics)
        mark_stage_finished(out, SETTINGS_FILE, settings)  # written last: its presence means finished
    return trainer.model, metrics


def review_log_likelihoods(model: BiLSTMLanguageModel, sequences: list[list[int]], batch_size: int, desc: str) -> np.ndarray:
    """(n, 2) forward and backward log p(review), in the order given; batches of similar length."""
    model.eval()
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out = np.empty((len(sequences), 2))
    starts, t0 = range(0, len(order), batch_size), time.perf_counter()
    for done, start in enumerate(starts, 1):
        rows = order[start : start + batch_size]
        out[rows] = model.sequence_log_likelihoods([sequences[i] for i in rows]).cpu().numpy()
        if done % max(1, len(starts) // 5) == 0 or done == len(starts):  # a few lines for the log, not a bar
            print(f"{desc}: {min(start + batch_size, len(order))}/{len(order)} reviews scored, {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (LMBayesArguments, ImdbArguments, ResultArguments, TrainingArguments)


@run_main
def main(argv=None):
    bayes_args, data_args, result_args, training_args, config = parse_args(argument_types(), argv)
    if not result_args.results_name:
        raise UserError("--results_name is required: the validation and test scores are this run's output")
    training_args = dataclasses.replace(training_args, **precision_flags(bayes_args.mixed_precision))
    with training_session(training_args.output_dir, "train.log", training_args.seed) as log:
        start_lm = load_language_model(bayes_args.init_from_lm)  # a missing or wrong LM fails here, before any data work
        tokenizer = load_tokenizer(bayes_args.init_from_lm)  # the LM's own vocabulary
        dsets = load_imdb(data_args)
        if len(dsets["validation"]) == 0:
            raise UserError("--validation_ratio 0: an ensemble fits its weights on the validation scores this run writes")
        cache_dir = resolve_cache_dir(data_args.tokenized_cache_dir, training_args.output_dir)

        # 1. One LM per class, both from the same pretrained LM, each trained on its class's reviews.
        settings = run_settings(bayes_args, data_args, training_args=training_args)
        lms, class_metrics = {}, {}
        for label, name in enumerate(CLASSES):
            lms[name], class_metrics[name] = fine_tune_class_lm(name, label, start_lm, dsets, tokenizer, bayes_args, training_args, {**settings, "class": name}, cache_dir)
        if training_args.process_index != 0:  # scoring is inference: the main process alone
            return

        # 2. Score every validation and test review under both LMs (the test split only here, once).
        def encode(batch):
            return tokenizer(batch["text"], truncation=True, max_length=bayes_args.max_length, return_attention_mask=False)

        positive_share = np.mean(dsets["train"]["label"])
        prior = np.log(positive_share / (1 - positive_share))
        start = time.perf_counter()
        splits, metrics, n_tokens = {}, {"precision": precision_label(bayes_args.mixed_precision), "score_precision": "fp32"}, 0
        for split in ("validation", "test"):
            encoded = tokenize_cached(dsets[split], encode, tokenizer=tokenizer, cache_dir=cache_dir, settings={"max_length": bayes_args.max_length},
                                      name=f"{split}-lm-bayes", remove_columns=["text"])
            sequences = encoded["input_ids"]
            n_tokens += sum(map(len, sequences))
            ll = {name: review_log_likelihoods(lm.to(training_args.device), sequences, bayes_args.score_batch_size, f"{split}: {name} LM")
                  for name, lm in lms.items()}
            labels = np.asarray(encoded["label"])
            by_direction = ll["pos"] - ll["neg"]  # (n, 2): the log-likelihood ratio read forward, and backward
            log_odds = by_direction.mean(axis=1) + prior
            splits[split] = (encoded["id"], labels, log_odds)
            for key, value in classification_metrics((log_odds > 0).astype(int), labels).items():
                metrics[f"{split}_{key}"] = value
            metrics[f"n_{split}"] = len(labels)
            if split == "validation":  # what each direction alone would give, measured where tuning is allowed
                for column, direction in enumerate(("forward", "backward")):
                    metrics[f"validation_accuracy_{direction}_only"] = float(((by_direction[:, column] + prior > 0) == labels).mean())
        score_seconds = time.perf_counter() - start
        metrics.update(score_seconds=round(score_seconds, 1), score_tokens_per_second=round(2 * n_tokens / score_seconds, 1), log_prior_odds=round(float(prior), 5))
        for name, values in class_metrics.items():
            metrics.update({f"{name}_lm_{k}": v for k, v in values.items()})

        # 3. The result file and the saved scores, like every classifier run.
        train_seconds = sum(v["train_seconds"] for v in class_metrics.values())
        _, path = write_result_and_probs(result_args.results_name, result_args.results_dir, splits,
                                         {"name": result_args.results_name, **split_provenance(data_args)}, metrics,
                                         config={**config, "lm_bayes": asdict(bayes_args)}, train_seconds=train_seconds, log_text=log.getvalue())
        print(f"validation accuracy {metrics['validation_accuracy']:.4f}, test accuracy {metrics['test_accuracy']:.4f} on {metrics['n_test']} reviews; "
              f"scores in {path}")


if __name__ == "__main__":
    main()
