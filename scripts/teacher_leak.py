#!/usr/bin/env python
"""Does a teacher that saw the validation labels raise its student's validation score? Measured with fast linear models.

    python scripts/teacher_leak.py            # make imdb-teacher-leak, ~4 min on one core

The scratch students (docs/scratch.md) learn from the no-pretraining ensemble's *refits*, members
trained on all 25,000 train reviews, validation included. A student never reads a validation
review, but it learns its teacher's function, and that function was fit to the validation labels.
This script measures the effect in miniature, where a run takes seconds:

* two NBSVM teachers at the grid point validation chose for the ensemble's member (1-3-grams,
  min_df 2, C 1; results/imdb-nbsvm-full.json): **A** fit on train minus validation, **B** on all of
  train, as the refits were;
* each scores the reviews the students learn from (``distillation_sets``: train minus validation
  and the unlabelled reviews, no validation or test text);
* one student per teacher, a different model (logistic regression on word 1-2-gram TF-IDF), fit
  to those soft targets alone;
* all four scored on validation and test. If B's student reads higher on validation than A's while
  their test accuracies agree, validation labels reached a student that never saw a validation review.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.distill import distillation_sets
from imdb_llm.imdb.nbsvm import TOKEN_PATTERN, NBLogisticRegression
from imdb_llm.paired import paired_comparison
from imdb_llm.results import ResultArguments, capture_log, write_result


@dataclass
class LeakArguments:
    teacher_ngram_max: int = field(default=3, metadata={"help": "The NBSVM teachers' longest n-gram."})
    teacher_min_df: int = field(default=2, metadata={"help": "The NBSVM teachers' minimum document frequency."})
    teacher_C: float = field(default=1.0, metadata={"help": "The NBSVM teachers' inverse L2 strength."})
    student_C: float = field(default=10.0, metadata={"help": "The students' inverse L2 strength (logistic regression on TF-IDF)."})
    student_max_features: int = field(default=300_000, metadata={"help": "The students' vocabulary: word 1-2-grams."})

    def __post_init__(self):
        if self.teacher_ngram_max < 1 or self.teacher_min_df < 1 or self.teacher_C <= 0 or self.student_C <= 0 or self.student_max_features < 1:
            raise UserError("--teacher_ngram_max, --teacher_min_df, --student_max_features must be >= 1 and --teacher_C, --student_C > 0")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (LeakArguments, ImdbArguments, ResultArguments)


def fit_student(features, teacher_probs: np.ndarray, C: float):
    """Logistic regression on soft targets: each review twice, as positive with weight p and as negative with 1 - p."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    n = features.shape[0]
    y = np.r_[np.ones(n), np.zeros(n)]
    # random_state, here and for the teachers: liblinear visits the reviews in a random order; fixed, a rerun repeats.
    return LogisticRegression(C=C, solver="liblinear", max_iter=300, random_state=0).fit(sp.vstack([features, features]), y,
                                                                       sample_weight=np.r_[teacher_probs, 1.0 - teacher_probs])


def measure(args: LeakArguments, dsets) -> dict:
    from scipy.special import expit
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    learn = distillation_sets(dsets)  # what the scratch students learn from: no validation or test text
    learn_texts = list(learn["train"]["text"]) + list(learn["unsupervised"]["text"])
    labelled = {"a": (list(dsets["train"]["text"]), np.asarray(dsets["train"]["label"])),
                "b": (list(dsets["train"]["text"]) + list(dsets["validation"]["text"]),
                      np.r_[dsets["train"]["label"], dsets["validation"]["label"]])}
    held_out = {split: (list(dsets[split]["text"]), np.asarray(dsets[split]["label"])) for split in ("validation", "test")}
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=3, max_features=args.student_max_features, sublinear_tf=True, dtype=np.float32).fit(learn_texts)
    student_x = words.transform(learn_texts)
    student_held_out = {split: words.transform(split_texts) for split, (split_texts, _) in held_out.items()}  # the same for both students
    metrics, correct = {}, {}
    for key, (texts, labels) in labelled.items():
        # Each teacher's own vocabulary, from the reviews it is fit on, as each NBSVM run builds it.
        counts = CountVectorizer(binary=True, ngram_range=(1, args.teacher_ngram_max), min_df=args.teacher_min_df, token_pattern=TOKEN_PATTERN,
                                 dtype=np.float32)
        teacher = NBLogisticRegression(C=args.teacher_C, random_state=0).fit(counts.fit_transform(texts), labels)
        student = fit_student(student_x, expit(teacher.decision_function(counts.transform(learn_texts))), args.student_C)
        for split, (split_texts, y) in held_out.items():
            metrics[f"teacher_{key}_{split}_accuracy"] = float(((teacher.decision_function(counts.transform(split_texts)) > 0) == y).mean())
            correct[key, split] = (student.decision_function(student_held_out[split]) > 0) == y
            metrics[f"student_{key}_{split}_accuracy"] = float(correct[key, split].mean())
        print(f"teacher {key.upper()} ({len(texts):,} reviews): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.split("_")[1] == key), flush=True)
    for split in ("validation", "test"):  # B's student minus A's, paired over the same reviews
        paired = paired_comparison(correct["b", split], correct["a", split])
        metrics[f"student_{split}_difference_points"] = round(100 * paired.difference, 2)
        metrics[f"student_{split}_difference_ci95_points"] = [round(100 * paired.ci_low, 2), round(100 * paired.ci_high, 2)]
        metrics[f"student_{split}_mcnemar_p"] = paired.mcnemar_p
    metrics.update(n_validation=len(held_out["validation"][1]), n_test=len(held_out["test"][1]), n_student_reviews=len(learn_texts))
    return metrics


@run_main
def main(argv=None):
    args, data_args, result_args, config = parse_args(argument_types(), argv)
    result_args.results_name = result_args.results_name or "imdb-teacher-leak"
    if data_args.validation_ratio <= 0:
        raise UserError("--validation_ratio must be above 0: the question is about the validation reviews")
    started = time.time()
    with capture_log(None) as log:
        dsets = load_imdb(data_args, with_unsupervised=True)
        metrics = measure(args, dsets)
        print(f"B's student minus A's: validation {metrics['student_validation_difference_points']:+.2f} points "
              f"(95 % {metrics['student_validation_difference_ci95_points']}, McNemar p {metrics['student_validation_mcnemar_p']:.2g}), "
              f"test {metrics['student_test_difference_points']:+.2f} points")
        written = write_result(result_args.results_name, metrics, headline="leak_check", config=config,
                               train_seconds=round(time.time() - started, 2), log_text=log.getvalue(), results_dir=result_args.results_dir)
    print(f"result written to {written}")
    return metrics


if __name__ == "__main__":
    main()
