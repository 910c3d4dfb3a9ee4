#!/usr/bin/env python
"""Paragraph vectors (PV-DBOW, Le & Mikolov 2014) + logistic regression on IMDB, no pretrained weights.

    python scripts/train_pvdbow.py configs/imdb_pvdbow.yaml

gensim ``Doc2Vec`` in distributed-bag-of-words mode learns one vector per review by predicting the
review's words (and, with ``--bigrams true``, its word bigrams, as Mesnil et al. 2014 did) from it.
It is trained on the train reviews (minus validation) and the 50,000 unlabelled reviews only. Every
labelled review, train included, then gets its vector by *inference* with the trained weights frozen:
the same procedure for the reviews the classifier learns from and the ones it is scored on, and no
validation or test text ever trains anything (Mesnil et al. trained on the test text too; we do not).

A logistic regression on the vectors (``C`` chosen on validation) gives the scores. The point is not
the member alone (about 88-89 %) but what it adds to an ensemble: it errs differently from n-gram
and convolutional models. Writes ``results/<name>.json`` + ``.probs.parquet`` like every classifier.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.nbsvm import TOKEN_PATTERN
from imdb_llm.probs import split_provenance, write_result_and_probs
from imdb_llm.imdb.training import classification_metrics
from imdb_llm.results import ResultArguments, atomic_write, capture_log
from imdb_llm.threads import physical_cores


@dataclass
class PvdbowArguments:
    vector_size: int = field(default=100, metadata={"help": "Size of each review's vector."})
    epochs: int = field(default=20, metadata={"help": "Passes over the training text."})
    infer_epochs: int = field(default=20, metadata={"help": "Passes when inferring a labelled review's vector."})
    min_count: int = field(default=2, metadata={"help": "Ignore tokens seen fewer times in the training text."})
    negative: int = field(default=5, metadata={"help": "Negative samples per predicted token."})
    sample: float = field(default=1e-4, metadata={"help": "Down-sampling of frequent tokens."})
    bigrams: bool = field(default=True, metadata={"help": "Predict word bigrams too (Mesnil et al. 2014), not only words."})
    C: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0], metadata={"help": "Grid: inverse L2 strength of the logistic regression."})
    seed: int = field(default=42, metadata={"help": "Seed of the vectors' initialisation and of inference."})
    workers: int = field(default=0, metadata={"help": "gensim training threads (0: one per physical core)."})
    output_dir: str = field(default="outputs/imdb-pvdbow", metadata={"help": "Where the Doc2Vec model and the classifier go."})


_TOKEN_RE = re.compile(TOKEN_PATTERN)  # NBSVM's tokens: words (don't) and ! / ?


def tokens(text: str, bigrams: bool) -> list[str]:
    words = _TOKEN_RE.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])] if bigrams else words


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (PvdbowArguments, ImdbArguments, ResultArguments)


def check(args: PvdbowArguments, data_args: ImdbArguments) -> None:
    if min(args.vector_size, args.epochs, args.infer_epochs, args.min_count, args.negative) < 1:
        raise UserError("--vector_size, --epochs, --infer_epochs, --min_count and --negative must be at least 1")
    if not args.C or min(args.C) <= 0:
        raise UserError(f"--C must list positive values, got {args.C}")
    if data_args.validation_ratio <= 0:
        raise UserError("--validation_ratio must be > 0: C is chosen on validation, never on test")


@run_main
def main(argv=None):
    args, data_args, result_args, config = parse_args(argument_types(), argv)
    check(args, data_args)
    os.makedirs(args.output_dir, exist_ok=True)
    with capture_log(os.path.join(args.output_dir, "train.log")) as log:
        from gensim.models.doc2vec import Doc2Vec, TaggedDocument
        from sklearn.linear_model import LogisticRegression

        dsets = load_imdb(data_args, with_unsupervised=True)
        train, val, test = dsets["train"], dsets["validation"], dsets["test"]
        print(f"IMDB: {len(train)} train / {len(val)} validation / {len(test)} test reviews, {len(dsets['unsupervised'])} unlabelled")

        # 1. Paragraph vectors from train + unlabelled text only.
        start = time.perf_counter()
        train_tokens = [tokens(t, args.bigrams) for t in train["text"]]  # kept: step 2 infers the train vectors from them
        corpus = [TaggedDocument(words, [i]) for i, words in
                  enumerate(train_tokens + [tokens(t, args.bigrams) for t in dsets["unsupervised"]["text"]])]
        workers = args.workers or physical_cores()
        model = Doc2Vec(corpus, dm=0, vector_size=args.vector_size, min_count=args.min_count, negative=args.negative, hs=0,
                        sample=args.sample, epochs=args.epochs, workers=workers, seed=args.seed)
        print(f"PV-DBOW: {len(corpus):,} documents, {len(model.wv):,} tokens in the vocabulary, {args.epochs} epochs, "
              f"{workers} thread(s), {time.perf_counter() - start:.0f}s")
        del corpus

        # 2. Every labelled review's vector by inference (weights frozen), seeded for repeatability.
        def infer(token_lists):
            model.random.seed(args.seed)
            return np.stack([model.infer_vector(words, epochs=args.infer_epochs) for words in token_lists])

        t0 = time.perf_counter()
        X = {"train": infer(train_tokens)}
        del train_tokens
        X.update({name: infer(tokens(t, args.bigrams) for t in split["text"]) for name, split in (("validation", val), ("test", test))})
        print(f"inferred {sum(len(x) for x in X.values()):,} review vectors in {time.perf_counter() - t0:.0f}s")
        train_seconds = time.perf_counter() - start
        y = {name: np.asarray(split["label"]) for name, split in (("train", train), ("validation", val), ("test", test))}

        # 3. The classifier: C on validation only; the chosen fit scores test once.
        grid, best = [], None
        for C in sorted(args.C):
            clf = LogisticRegression(C=C, max_iter=2000).fit(X["train"], y["train"])
            acc = float((clf.predict(X["validation"]) == y["validation"]).mean())
            grid.append({"C": C, "validation_accuracy": acc})
            print(f"  C {C:g}: validation {acc:.4f}")
            if best is None or acc > best[1]:
                best = (clf, acc, C)
        clf, val_acc, chosen_c = best
        val_scores, test_scores = clf.decision_function(X["validation"]), clf.decision_function(X["test"])
        metrics = {f"test_{k}": v for k, v in classification_metrics((test_scores > 0).astype(int), y["test"]).items()}
        metrics.update({"n_test": int(len(y["test"])), "n_train": int(len(y["train"])), "n_validation": int(len(y["validation"])),
                        "n_unsupervised": len(dsets["unsupervised"]), "validation_accuracy": val_acc, "chosen": {"C": chosen_c}, "grid": grid})

        import joblib

        # separately=[]: gensim keeps its large arrays inside the one file, which the rename then carries.
        atomic_write(os.path.join(args.output_dir, "doc2vec.model"), lambda tmp: model.save(str(tmp), separately=[]))
        atomic_write(os.path.join(args.output_dir, "classifier.joblib"), lambda tmp: joblib.dump(clf, tmp))
        print(f"test accuracy {metrics['test_accuracy']:.4f} on {len(y['test'])} reviews; models in {args.output_dir}")
        if result_args.results_name:
            provenance = {"name": result_args.results_name, **split_provenance(data_args)}
            splits = {"validation": (val["id"], y["validation"], val_scores), "test": (test["id"], y["test"], test_scores)}
            path, _ = write_result_and_probs(result_args.results_name, result_args.results_dir, splits, provenance, metrics,
                                             config={**config, "pvdbow": asdict(args)}, train_seconds=train_seconds, log_text=log.getvalue(),
                                             extra={"parameters": int(model.dv.vectors.size + model.syn1neg.size) + args.vector_size + 1})
            print(f"result written to {path}")


if __name__ == "__main__":
    main()
