#!/usr/bin/env python
"""Pretrain a forward + backward LSTM language model on IMDB's own text, for the BiLSTM classifier.

    python scripts/pretrain_lstm_lm.py configs/imdb_lstm_lm.yaml [--key value ...]
    then: python scripts/train_textclf.py configs/imdb_lstm_lminit.yaml   (make imdb-lstm-lm, then make imdb-lstm-lminit)

Dai & Le (2015) showed that an LSTM first trained as a language model on IMDB text (their SA-LSTM)
classifies far better than one trained on the labels alone. This is that recipe at laptop scale:
the LM (imdb_llm.imdb.models.lstm_lm) reads IMDB train + unsupervised reviews (never validation or test
text), packed into blocks; its embeddings start from the word2vec table the other IMDB models use
(make imdb-word2vec). The perplexity on the validation reviews' text is measured as it trains.
Checkpoints every ``save_steps``: the same command resumes after a kill.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from transformers import Trainer, TrainingArguments

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb, pretraining_texts
from imdb_llm.imdb.embeddings import copy_into_embeddings
from imdb_llm.imdb.models.lstm_lm import BiLSTMLanguageModel, BiLSTMLMConfig, frequency_ranks
from imdb_llm.imdb.scratch import ThroughputCallback, pack_dataset, stack_blocks
from imdb_llm.imdb.tokenization import load_tokenizer
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir
from imdb_llm.imdb.training import count_parameters
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.results import ResultArguments, write_result
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings
from imdb_llm.threads import training_session


@dataclass
class LMArguments:
    tokenizer_name: str = field(default="outputs/imdb-tokenizer", metadata={"help": "Tokenizer folder (make imdb-tokenizer); the classifier must use the same."})
    embedding_dim: int = field(default=300, metadata={"help": "Word-vector size (the classifier's embedding_dim)."})
    hidden_size: int = field(default=256, metadata={"help": "LSTM size per direction (the classifier's hidden_size)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on embeddings and on the LSTM outputs."})
    cutoffs: list[int] = field(default_factory=lambda: [2000, 10000], metadata={"help": "Adaptive-softmax cluster boundaries, in frequency ranks."})
    block_size: int = field(default=256, metadata={"help": "Tokens per training block (reviews are concatenated, [SEP] between them)."})
    word2vec_cache: str | None = field(default="outputs/imdb-word2vec-300.npy", metadata={"help": "Start the embeddings from this word2vec table (make imdb-word2vec); none: random."})
    mixed_precision: str = field(default="auto", metadata={"help": "no (fp32), auto (bf16 autocast where native), bf16 or fp16."})


def initial_embeddings(path: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    if not path or path.lower() == "none":
        return None
    if not os.path.isfile(path):
        raise UserError(f"--word2vec_cache {path}: not found (make imdb-word2vec builds it, or pass --word2vec_cache none)")
    table = np.load(path)
    if table.shape != shape:
        raise UserError(f"--word2vec_cache {path}: shape {table.shape}, this tokenizer and embedding_dim need {shape}")
    return table


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (LMArguments, ImdbArguments, ResultArguments, TrainingArguments)


@run_main
def main(argv=None, extra_callbacks=None):
    lm_args, data_args, result_args, training_args, config = parse_args(argument_types(), argv)
    # The same command continues a run cut short (from its newest checkpoint, if that was saved with these settings).
    training_args.resume_from_checkpoint = training_args.resume_from_checkpoint or "auto"
    training_args = dataclasses.replace(training_args, **precision_flags(lm_args.mixed_precision))
    with training_session(training_args.output_dir, "pretrain.log", training_args.seed) as log:

        # 1. Text a self-supervised stage may see: train (minus validation) + unsupervised. The
        #    validation reviews' text measures perplexity; test text is never read.
        tokenizer = load_tokenizer(lm_args.tokenizer_name)
        dsets = load_imdb(data_args, with_unsupervised=True)
        cache_dir = resolve_cache_dir(data_args.tokenized_cache_dir, training_args.output_dir)
        with training_args.main_process_first(desc="pack"):
            train_blocks = pack_dataset(pretraining_texts(dsets), tokenizer, lm_args.block_size, cache_dir=cache_dir, desc="lm pretraining text")
            eval_texts = dsets["validation"].select_columns(["text"])
            eval_blocks = pack_dataset(eval_texts, tokenizer, lm_args.block_size, cache_dir=cache_dir, desc="lm validation text") if len(eval_texts) else None
        if len(train_blocks) == 0:
            raise UserError(f"no pretraining blocks: the text is shorter than one block of {lm_args.block_size} tokens")
        print(f"{len(train_blocks)} blocks of {lm_args.block_size} tokens to pretrain on, {len(eval_blocks) if eval_blocks else 0} to measure perplexity on")

        # 2. The model: frequency ranks for the adaptive softmax, embeddings from word2vec.
        config_obj = BiLSTMLMConfig(vocab_size=len(tokenizer), embedding_dim=lm_args.embedding_dim, hidden_size=lm_args.hidden_size,
                                    dropout=lm_args.dropout, cutoffs=lm_args.cutoffs, pad_token_id=tokenizer.pad_token_id)
        model = BiLSTMLanguageModel(config_obj)
        counts = np.bincount(train_blocks.with_format("numpy")[:]["input_ids"].ravel(), minlength=len(tokenizer))
        model.set_frequency_ranks(frequency_ranks(counts))
        table = initial_embeddings(lm_args.word2vec_cache, (len(tokenizer), lm_args.embedding_dim))
        if table is not None:
            copy_into_embeddings(model, table)
        print(f"{count_parameters(model) / 1e6:.1f}M parameters; embeddings from {lm_args.word2vec_cache if table is not None else 'random'}")

        # 3. Train, resuming from the last checkpoint if there is one.
        throughput = ThroughputCallback.for_blocks(lm_args.block_size, training_args)
        settings = run_settings(lm_args, data_args, training_args=training_args)
        resume = resolve_resume(training_args, settings)
        clock = TrainClock(resume)  # checkpoints carry the training time, so a resumed run reports all of it
        log = RunLog(resume, log)  # ... and the log so far: the result's log holds every sitting
        trainer = Trainer(model=model, args=training_args, train_dataset=train_blocks, eval_dataset=eval_blocks, data_collator=stack_blocks,
                          callbacks=[throughput, SettingsRecord(settings), clock, log, *(extra_callbacks or [])])
        if resume:
            print(f"resuming from {resume}")
        trainer.train(resume_from_checkpoint=resume)
        seconds = clock.seconds()

        # 4. Perplexity on the validation text, the model, the result file.
        metrics = {"precision": precision_label(lm_args.mixed_precision), **throughput.metrics()}
        if eval_blocks is not None:
            loss = trainer.evaluate()["eval_loss"]
            metrics.update(validation_loss=round(loss, 4), validation_perplexity=round(math.exp(loss), 2), n_validation_tokens=len(eval_blocks) * lm_args.block_size)
        if trainer.is_world_process_zero():
            trainer.save_model(training_args.output_dir)
            tokenizer.save_pretrained(training_args.output_dir)
            if result_args.results_name:
                write_result(result_args.results_name, metrics, headline="perplexity", config={**config, "lm": asdict(lm_args)}, train_seconds=seconds, log_text=log.getvalue(),
                             results_dir=result_args.results_dir, extra={"parameters": count_parameters(model), "log_history": trainer.state.log_history})
            print(f"validation perplexity {metrics.get('validation_perplexity')}; LM saved to {training_args.output_dir}")


if __name__ == "__main__":
    main()
