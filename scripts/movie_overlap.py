#!/usr/bin/env python
"""Mark the validation reviews that share a movie with the training reviews (imdb_llm.imdb.movie_overlap).

    python scripts/movie_overlap.py            # make imdb-movie-overlap, about a minute

Carves validation exactly as every IMDB run does (``--validation_ratio``, ``--split_seed``), scores
each validation review against its neighbours in the file's order, and writes
``results/imdb-movie-overlap.json`` (how the row order encodes movies, and how many validation
reviews have a sibling in train) with ``results/imdb-movie-overlap.validation.parquet`` (review id,
sibling score, above the threshold or not). The report's ``{{overlap:RUN,...}}`` placeholder then splits any run's saved
validation accuracy into the reviews with and without a sibling, next to its test accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.movie_overlap import SIBLING_THRESHOLD, TWIN_THRESHOLD, WINDOW, offset_profile, rare_word_vectorizer, share_with_twin, sibling_scores
from imdb_llm.overlap import RESULT_NAME, SCORES_SUFFIX, write_scores
from imdb_llm.results import ResultArguments, capture_log, write_result


@dataclass
class OverlapArguments:
    window: int = field(default=WINDOW, metadata={"help": "How many rows either side of a review count as its neighbours."})

    def __post_init__(self):
        if self.window < 1:
            raise UserError(f"--window must be at least 1, got {self.window}")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (OverlapArguments, ImdbArguments, ResultArguments)


@run_main
def main(argv=None):
    args, data_args, result_args, config = parse_args(argument_types(), argv)
    result_args.results_name = result_args.results_name or RESULT_NAME
    started = time.time()
    with capture_log(None) as log:
        dsets = load_imdb(data_args, with_unsupervised=True)  # cleaned text, each review with its row id
        validation_ids = np.sort(np.asarray(dsets["validation"]["id"], dtype=np.int64))
        if validation_ids.size == 0:
            raise UserError("no validation reviews: --validation_ratio must be above 0")
        # Back into the file's row order, where a movie's reviews sit together.
        texts = [""] * (len(dsets["train"]) + len(dsets["validation"]))
        for split in ("train", "validation"):
            for i, text in zip(dsets[split]["id"], dsets[split]["text"]):
                texts[i] = text
        print(f"{len(texts):,} train reviews; {validation_ids.size:,} carved for validation (seed {data_args.split_seed})")
        vectorizer = rare_word_vectorizer(texts)
        vectors = vectorizer.transform(texts)
        profile = offset_profile(vectors)
        print("share of review pairs k rows apart with cosine > %.2f: %s" % (SIBLING_THRESHOLD, ", ".join(f"k={k}: {v:.1%}" for k, v in profile.items())))
        in_train = np.ones(len(texts), dtype=bool)
        in_train[validation_ids] = False
        scores = sibling_scores(vectors, in_train, args.window)[validation_ids]
        has_sibling = scores > SIBLING_THRESHOLD
        print(f"validation reviews with a sibling in train: {int(has_sibling.sum()):,} of {validation_ids.size:,}")

        # The same question asked of whole pools, with test as the control (its movies are not in train):
        # how often a review's nearest pool review anywhere shares its rare words.
        test_sample = np.random.default_rng(data_args.split_seed).choice(len(dsets["test"]), validation_ids.size, replace=False)
        queries = {"validation": vectors[validation_ids], "test": vectorizer.transform(dsets["test"].select(test_sample)["text"])}
        pools = {"train": vectors[np.flatnonzero(in_train)], "unlabelled": vectorizer.transform(dsets["unsupervised"]["text"])}
        twins = {f"{q}_with_twin_in_{p}": round(share_with_twin(qv, pv, TWIN_THRESHOLD), 4) for p, pv in pools.items() for q, qv in queries.items()}
        print(f"nearest review anywhere above cosine {TWIN_THRESHOLD}: " + ", ".join(f"{k} {v:.1%}" for k, v in twins.items()))
        metrics = {
            "n_validation": int(validation_ids.size),
            "n_validation_with_sibling": int(has_sibling.sum()),
            "sibling_threshold": SIBLING_THRESHOLD,
            "window": args.window,
            "pairs_above_threshold_by_offset": {str(k): round(v, 4) for k, v in profile.items()},
            "twin_threshold": TWIN_THRESHOLD,
            "n_test_sample": int(test_sample.size),
            **twins,
        }
        scores_path = Path(result_args.results_dir) / f"{result_args.results_name}{SCORES_SUFFIX}"
        write_scores(scores_path, validation_ids, scores, has_sibling)
        written = write_result(result_args.results_name, metrics, headline="data_split",
                               config={**config, "window": args.window, "sibling_threshold": SIBLING_THRESHOLD,
                                       "validation_ratio": data_args.validation_ratio, "split_seed": data_args.split_seed},
                               train_seconds=round(time.time() - started, 2), log_text=log.getvalue(), results_dir=result_args.results_dir)
    print(f"result written to {written} (scores: {scores_path})")
    return metrics


if __name__ == "__main__":
    main()
