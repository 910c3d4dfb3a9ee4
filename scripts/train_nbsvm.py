#!/usr/bin/env python
"""NB-weighted logistic regression ("NBSVM", Wang & Manning 2012) on binary 1-3-grams of IMDB.

    python scripts/train_nbsvm.py configs/imdb_nbsvm.yaml [--C 0.1 0.3 --ngram_max 3 ...]

No pretrained weights and no neural network: a CountVectorizer, Naive Bayes log-count ratios and
liblinear, minutes on a CPU. Pipeline: IMDB (the same validation split as every other run) ->
binary n-gram counts fitted on train -> a small grid over n-gram order, min_df and C, scored on
validation only -> the best model scores test once -> ``results/<name>.json`` + ``.probs.parquet``
and the fitted pipeline (joblib) in ``output_dir``.

The grid is cheap because the vocabulary is built once, with the widest settings: a smaller
n-gram order or a larger min_df is then just a subset of its columns (exactly what a vectorizer
fitted with those settings on the same train text would produce).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.nbsvm import TOKEN_PATTERN, NBLogisticRegression, ngram_orders
from imdb_llm.probs import split_provenance, write_result_and_probs
from imdb_llm.imdb.training import classification_metrics
from imdb_llm.results import ResultArguments, atomic_write, capture_log


@dataclass
class NbsvmArguments:
    ngram_max: list[int] = field(default_factory=lambda: [2, 3], metadata={"help": "Grid: longest n-gram (features are 1..n-grams)."})
    min_df: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "Grid: keep n-grams seen in at least this many train reviews."})
    C: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0], metadata={"help": "Grid: inverse L2 strength of the logistic regression."})
    alpha: float = field(default=1.0, metadata={"help": "Laplace smoothing of the NB counts."})
    token_pattern: str = field(
        default=TOKEN_PATTERN,
        metadata={"help": "Tokens: words (with inner apostrophes: don't) and ! / ? (sentiment-bearing punctuation)."},
    )
    lowercase: bool = field(default=True, metadata={"help": "Lower-case before tokenising."})
    max_iter: int = field(default=1000, metadata={"help": "liblinear iterations per fit."})
    output_dir: str = field(default="outputs/imdb-nbsvm", metadata={"help": "Where the fitted pipeline (model.joblib) goes."})


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (NbsvmArguments, ImdbArguments, ResultArguments)


def check_grid(args: NbsvmArguments) -> None:
    if not args.ngram_max or min(args.ngram_max) < 1:
        raise UserError(f"--ngram_max must list n-gram orders >= 1, got {args.ngram_max}")
    if not args.min_df or min(args.min_df) < 1:
        raise UserError(f"--min_df must list counts >= 1, got {args.min_df}")
    if not args.C or min(args.C) <= 0:
        raise UserError(f"--C must list positive values, got {args.C}")
    if args.alpha <= 0:
        raise UserError(f"--alpha must be positive, got {args.alpha}")


def search_grid(args, X_train, y_train, X_val, y_val, orders, doc_freq, refit: bool):
    """Every grid point fitted on train and scored on validation: ``(grid rows, (best row, its model, its columns))``."""
    grid, best = [], None
    for n in sorted(args.ngram_max):
        for min_df in sorted(args.min_df):
            columns = np.flatnonzero((orders <= n) & (doc_freq >= min_df))
            Xt = X_train[:, columns]
            for C in sorted(args.C):
                t0 = time.perf_counter()
                model = NBLogisticRegression(C=C, alpha=args.alpha, max_iter=args.max_iter).fit(Xt, y_train)
                fit_seconds = time.perf_counter() - t0
                acc = float((model.predict(X_val[:, columns]) == y_val).mean()) if not refit else None
                row = {"ngram_max": n, "min_df": min_df, "C": C, "n_features": int(len(columns)),
                       "validation_accuracy": acc, "fit_seconds": round(fit_seconds, 1)}
                grid.append(row)
                print(f"  1-{n}-grams, min_df {min_df}, C {C:g}: {len(columns):,} features, " + (f"validation {acc:.4f}" if not refit else "no validation (refit)")
                      + f" ({fit_seconds:.0f}s)")
                if best is None or (not refit and acc > best[0]["validation_accuracy"]):
                    best = (row, model, columns)
    return grid, best


@run_main
def main(argv=None):
    args, data_args, result_args, config = parse_args(argument_types(), argv)
    check_grid(args)
    refit = data_args.validation_ratio <= 0  # all of train, at a grid point chosen before on validation
    if refit and len(args.ngram_max) * len(args.min_df) * len(args.C) > 1:
        raise UserError("--validation_ratio 0 (a refit on all of train) needs one value each for --ngram_max, --min_df and --C: "
                        "the grid is chosen on validation, never on test")
    os.makedirs(args.output_dir, exist_ok=True)
    with capture_log(os.path.join(args.output_dir, "train.log")) as log:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.pipeline import Pipeline

        dsets = load_imdb(data_args)
        train, val = dsets["train"], dsets["validation"]
        y_train, y_val = np.asarray(train["label"]), np.asarray(val["label"])
        print(f"IMDB: {len(train)} train / {len(val)} validation / {len(dsets['test'])} test reviews")

        # 1. One vocabulary with the widest grid settings, fitted on train text only.
        start = time.perf_counter()
        vectorizer = CountVectorizer(
            binary=True,  # presence, not counts: a review saying "bad" 5 times is not 5x as negative
            ngram_range=(1, max(args.ngram_max)), min_df=min(args.min_df),
            token_pattern=args.token_pattern, lowercase=args.lowercase, dtype=np.float32,
        )
        X_train = vectorizer.fit_transform(train["text"])
        X_val = vectorizer.transform(val["text"]) if len(val) else None
        vectorize_seconds = time.perf_counter() - start
        names = vectorizer.get_feature_names_out()
        orders = ngram_orders(names)
        doc_freq = np.asarray(X_train.sum(axis=0)).ravel()  # binary features: column sum = document frequency
        print(f"vocabulary: {len(names):,} n-grams (1..{max(args.ngram_max)}, min_df {min(args.min_df)}) in {vectorize_seconds:.0f}s")

        # 2. The grid, on validation only. Keep just the best fit (each holds millions of weights).
        grid, (choice, model, columns) = search_grid(args, X_train, y_train, X_val, y_val, orders, doc_freq, refit)
        print(f"chosen on validation: {choice}" if not refit else f"refit on all {len(train)} train reviews at {choice}")

        # 3. The chosen fit as one loadable pipeline: a vectorizer restricted to its columns + the model.
        pipeline = Pipeline([
            ("vectorizer", CountVectorizer(
                binary=True, ngram_range=(1, choice["ngram_max"]), token_pattern=args.token_pattern,
                lowercase=args.lowercase, dtype=np.float32, vocabulary={str(names[c]): i for i, c in enumerate(columns)},
            )),
            ("nb_lr", model),
        ])
        val_scores = pipeline.decision_function(val["text"]) if not refit else None
        # Sanity: the pipeline re-reads raw text; it must reproduce the grid's validation score.
        if not refit and abs(float(((val_scores > 0).astype(int) == y_val).mean()) - choice["validation_accuracy"]) > 1e-9:
            raise RuntimeError("the saved pipeline does not reproduce the grid's validation accuracy")

        # 4. Test, once, with the chosen model (fitted on train only, so its validation scores stay
        #    out-of-sample for an ensemble to fit weights on).
        test = dsets["test"]
        y_test = np.asarray(test["label"])
        test_scores = pipeline.decision_function(test["text"])
        metrics = {f"test_{k}": v for k, v in classification_metrics((test_scores > 0).astype(int), y_test).items()}
        metrics.update({
            "n_test": int(len(y_test)), "n_train": int(len(y_train)), "n_validation": int(len(y_val)),
            "validation_accuracy": choice["validation_accuracy"], "chosen": {k: choice[k] for k in ("ngram_max", "min_df", "C")},
            "n_features": choice["n_features"], "grid": grid, "vectorize_seconds": round(vectorize_seconds, 1),
        })
        train_seconds = vectorize_seconds + choice["fit_seconds"]

        import joblib

        model_path = os.path.join(args.output_dir, "model.joblib")
        atomic_write(model_path, lambda tmp: joblib.dump(pipeline, tmp))
        print(f"test accuracy {metrics['test_accuracy']:.4f} on {len(y_test)} reviews; model in {model_path}")
        if result_args.results_name:
            provenance = {"name": result_args.results_name, **split_provenance(data_args)}
            splits = {"test": (test["id"], y_test, test_scores)}
            if not refit:
                splits["validation"] = (val["id"], y_val, val_scores)
            path, _ = write_result_and_probs(result_args.results_name, result_args.results_dir, splits, provenance, metrics,
                                             config={**config, "nbsvm": asdict(args)}, train_seconds=train_seconds, log_text=log.getvalue(),
                                             extra={"parameters": choice["n_features"] + 1})
            print(f"result written to {path}")


if __name__ == "__main__":
    main()
