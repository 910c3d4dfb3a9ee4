#!/usr/bin/env python
"""Train a TextCNN or BiLSTM sentiment classifier on IMDB with the HF ``Trainer``.

    python scripts/train_textclf.py configs/imdb_textcnn.yaml [--num_train_epochs 2 ...]
    accelerate launch --multi_gpu scripts/train_textclf.py configs/imdb_lstm.yaml

Pipeline: IMDB (validation carved from train) -> the IMDB WordPiece tokenizer -> optional word2vec
initialisation of the embedding table -> Trainer (best epoch on validation) -> one evaluation on
the test split -> plots, predictions and ``results/<name>.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments

from imdb_llm.benchmark import PrecisionBenchmarkArguments, benchmark_precision, write_benchmark_results
from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb, pretraining_texts
from imdb_llm.imdb.embeddings import copy_into_embeddings, load_vectors_file, train_word2vec, write_provenance
from imdb_llm.imdb.models import BiLSTMConfig, BiLSTMForSequenceClassification, TextCNNConfig, TextCNNForSequenceClassification
from imdb_llm.imdb.models.lstm_lm import load_lm_into_classifier
from imdb_llm.imdb.tokenization import load_tokenizer
from imdb_llm.imdb.tokenized_cache import resolve_cache_dir, tokenize_cached
from imdb_llm.imdb.training import classification_trainer, count_parameters, finish_classification_run
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.results import ResultArguments, atomic_write
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings, timed_train
from imdb_llm.threads import training_session
import imdb_llm.imdb.models  # noqa: F401  (registers textcnn / bilstm with the Auto classes)


@dataclass
class ModelArguments:
    model_type: str = field(default="textcnn", metadata={"help": "textcnn or bilstm."})
    tokenizer_name: str = field(default="outputs/imdb-tokenizer", metadata={"help": "Tokenizer folder (make imdb-tokenizer)."})
    max_length: int = field(default=512, metadata={"help": "Tokens kept per review (head)."})
    embedding_dim: int = field(default=300, metadata={"help": "Word-vector size."})
    embedding_init: str = field(default="word2vec", metadata={"help": "random | word2vec (trained here on IMDB train+unsup) | file."})
    vectors_file: str | None = field(default=None, metadata={"help": "GloVe/word2vec text file when embedding_init=file."})
    word2vec_cache: str | None = field(default=None, metadata={"help": "Reuse/save the word2vec table here (.npy)."})
    word2vec_epochs: int = field(default=5, metadata={"help": "word2vec passes over the text."})
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the initial vectors fixed (Kim's 'static')."})
    init_from_lm: str | None = field(default=None, metadata={"help": "BiLSTM only: start the embeddings and first-layer LSTMs from this LSTM language model "
                                                             "(make imdb-lstm-lm) instead of embedding_init."})
    # TextCNN
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5], metadata={"help": "TextCNN window widths."})
    num_filters: int = field(default=100, metadata={"help": "TextCNN filters per width."})
    # BiLSTM
    hidden_size: int = field(default=256, metadata={"help": "BiLSTM hidden size per direction."})
    num_layers: int = field(default=2, metadata={"help": "BiLSTM layers."})
    # both
    pooling: str = field(default="max", metadata={"help": "max | max_mean (| last for bilstm)."})
    dropout: float = field(default=0.5, metadata={"help": "Dropout before the classifier (and between LSTM layers)."})
    embedding_dropout: float = field(default=0.0, metadata={"help": "Dropout on the embeddings."})
    mixed_precision: str = field(default="auto", metadata={"help": "no (fp32), auto (bf16 autocast where the CPU/GPU has native bf16), bf16 or fp16. "
                                                            "Measure on your machine first: --benchmark_precision_steps N (make precision-benches)."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after this many evaluations without improvement."})
    prepare_only: bool = field(default=False, metadata={"help": "Only build the word2vec cache and exit (CPU work worth doing before renting a GPU)."})


def build_model(args: ModelArguments, tokenizer):
    common = dict(
        vocab_size=len(tokenizer),
        embedding_dim=args.embedding_dim,
        dropout=args.dropout,
        embedding_dropout=args.embedding_dropout,
        pooling=args.pooling,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    if args.model_type == "textcnn":
        return TextCNNForSequenceClassification(TextCNNConfig(kernel_sizes=args.kernel_sizes, num_filters=args.num_filters, **common))
    if args.model_type == "bilstm":
        return BiLSTMForSequenceClassification(BiLSTMConfig(hidden_size=args.hidden_size, num_layers=args.num_layers, **common))
    raise UserError(f"--model_type must be textcnn or bilstm, got {args.model_type!r}")


def initial_vectors(args: ModelArguments, tokenizer, data_args: ImdbArguments, training_args) -> np.ndarray | None:
    """The embedding table to start from (None = random), cached so TextCNN and BiLSTM share it."""
    if args.embedding_init == "random":
        return None
    if args.embedding_init == "file":
        if not args.vectors_file:
            raise UserError("--embedding_init file needs --vectors_file PATH")
        table, coverage = load_vectors_file(args.vectors_file, tokenizer, args.embedding_dim)
        print(f"vectors from {args.vectors_file}: {coverage:.1%} of the vocabulary")
        return table
    if args.embedding_init != "word2vec":
        raise UserError(f"--embedding_init must be random, word2vec or file, got {args.embedding_init!r}")
    cache = args.word2vec_cache
    if cache and os.path.isfile(cache):
        table = np.load(cache)
        if table.shape == (len(tokenizer), args.embedding_dim):
            print(f"word2vec table from cache {cache}")
            return table
        print(f"ignoring cache {cache}: shape {table.shape} does not fit this tokenizer/dim")
    # Only the main process trains word2vec; the others wait and read the cache it writes.
    cache = cache or os.path.join(training_args.output_dir, "word2vec.npy")
    with training_args.main_process_first(desc="word2vec"):
        if not os.path.isfile(cache):
            # The unsupervised split is read only here: with a cached table it is not needed at all.
            started = time.perf_counter()
            texts = pretraining_texts(load_imdb(data_args, with_unsupervised=True))["text"]
            table, coverage = train_word2vec(tokenizer, texts, dim=args.embedding_dim, epochs=args.word2vec_epochs, seed=training_args.seed)
            def save_table(tmp):
                with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the temporary name
                    np.save(f, table)

            atomic_write(cache, save_table)
            # Its seconds count in the training time of every model that starts from it (run_scratch).
            write_provenance(cache, time.perf_counter() - started, text="IMDB train (validation carved out) + unsupervised", coverage=round(coverage, 4))
            print(f"word2vec trained on IMDB train+unsup: {coverage:.1%} of the vocabulary, saved to {cache}")
    return np.load(cache)


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (ModelArguments, PrecisionBenchmarkArguments, ImdbArguments, ResultArguments, TrainingArguments)


@run_main
def main(argv=None):
    model_args, bench_args, data_args, result_args, training_args, config = parse_args(argument_types(), argv)
    bench_args.check()
    training_args = dataclasses.replace(training_args, **precision_flags(model_args.mixed_precision))
    settings = run_settings(model_args, data_args, training_args=training_args)
    resume = resolve_resume(training_args, settings)  # --resume_from_checkpoint auto; refuses another run's checkpoint
    with training_session(training_args.output_dir, "train.log", training_args.seed, tf32=True) as log:
        if resume:
            print(f"resuming from {resume}", flush=True)

        # 1. Data: train/validation/test (+ unsupervised text for word2vec).
        tokenizer = load_tokenizer(model_args.tokenizer_name)
        dsets = load_imdb(data_args)

        # 2. Model, with the embedding table (or, from a pretrained LM, the LSTMs too) initialised
        #    before training starts.
        model = build_model(model_args, tokenizer)
        if model_args.init_from_lm:
            if model_args.model_type != "bilstm":
                raise UserError(f"--init_from_lm needs --model_type bilstm, got {model_args.model_type!r}")
            copied = load_lm_into_classifier(model, model_args.init_from_lm)
            print(f"embeddings and first-layer LSTMs ({copied} tensors) from the language model in {model_args.init_from_lm}")
            table = None
        else:
            table = initial_vectors(model_args, tokenizer, data_args, training_args)
        if model_args.prepare_only:
            print(f"prepared: tokenizer {model_args.tokenizer_name}, embeddings {model_args.init_from_lm or model_args.word2vec_cache or 'random'}")
            return
        if table is not None:
            copy_into_embeddings(model, table, freeze=model_args.freeze_embeddings)

        # 3. Tokenise once; the collator pads each batch to its own longest review.
        def tokenize(batch):
            return tokenizer(batch["text"], truncation=True, max_length=model_args.max_length)

        cache_dir = resolve_cache_dir(data_args.tokenized_cache_dir, training_args.output_dir)
        with training_args.main_process_first(desc="tokenize"):
            encoded = {k: tokenize_cached(dsets[k], tokenize, tokenizer=tokenizer, cache_dir=cache_dir, settings={"max_length": model_args.max_length},
                                          name=k, remove_columns=["text"]) for k in ("train", "validation", "test")}
        collator = DataCollatorWithPadding(tokenizer)
        extra = {"precision": precision_label(model_args.mixed_precision)}
        config = {**config, "model": asdict(model_args)}

        # 4. Optional speed figure: fp32 vs bf16 autocast on copies of the initialised model, same batches.
        if bench_args.benchmark_precision_steps > 0:
            figures = benchmark_precision(lambda: copy.deepcopy(model), encoded["train"], training_args, collator, steps=bench_args.benchmark_precision_steps,
                                          warmup_steps=bench_args.benchmark_warmup_steps, sampling=training_args.train_sampling_strategy)
            if bench_args.benchmark_only:
                if training_args.process_index == 0:
                    write_benchmark_results({"precision": {"bench_max_length": model_args.max_length, **figures}}, results_name=result_args.results_name,
                                            result_args=result_args, config=config, log=log, fields=extra, parameters=count_parameters(model))
                return
            extra.update(figures)

        clock, log = TrainClock(resume), RunLog(resume, log)  # a resumed run reports all its training time and log
        callbacks = [clock, log, SettingsRecord(settings)]
        if model_args.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=model_args.early_stopping_patience))
        trainer = classification_trainer(model, training_args, encoded, tokenizer, collator, callbacks)

        # 5. Train (best checkpoint on validation when load_best_model_at_end), then test once.
        _, seconds = timed_train(trainer, resume_from_checkpoint=resume)
        seconds += clock.before
        finish_classification_run(trainer, encoded["test"], train_seconds=seconds, config=config, result_args=result_args, log_buffer=log,
                                  extra_metrics=extra, texts=dsets["test"]["text"], validation_dataset=encoded["validation"], data_args=data_args)


if __name__ == "__main__":
    main()
