"""Is model A better than model B, or is the gap noise? A paired comparison on the same test reviews.

Two runs scored on the same 25,000 reviews are not independent samples: most reviews are easy for
both. Comparing them review by review is far more sensitive than comparing two accuracies with
their separate intervals. Two standard tools, both computed from the saved probabilities
(``results/<name>.probs.parquet``):

* **McNemar's exact test** (Dietterich 1998, "Approximate statistical tests for comparing
  supervised classification learning algorithms"): only the reviews on which the two models
  disagree carry information. If neither model is better, each of those is equally likely to go
  either way, so the count A-right-B-wrong is Binomial(n_disagree, 1/2). The p-value is the
  two-sided binomial tail.
* **A paired bootstrap interval** of the accuracy difference: resample reviews with replacement
  and recompute both accuracies on the same resample (Koehn 2004 uses the same idea for MT).

Both measure the uncertainty that comes from *which test reviews* were drawn, not from the seed or
data order of training; a claim about the models themselves needs several seeds as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError
from imdb_llm.probs import PROBS_SUFFIX, read_probs


@dataclass(frozen=True)
class PairedComparison:
    """A vs B on the same reviews; ``difference`` = accuracy A - accuracy B."""

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    only_a_right: int
    only_b_right: int
    mcnemar_p: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired_comparison(correct_a, correct_b, *, bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95) -> PairedComparison:
    """Compare two models from per-review correctness flags (same reviews, same order)."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty 1-D flag arrays, got shapes {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    disagree = only_a + only_b
    p = 1.0 if disagree == 0 else float(binomtest(only_a, disagree, 0.5).pvalue)
    # Per-review difference in {-1, 0, 1}; its mean over a resample is that resample's accuracy gap.
    diff = a.astype(np.int8) - b.astype(np.int8)
    rng = np.random.default_rng(seed)
    gaps = np.array([diff[rng.integers(0, diff.size, diff.size)].mean() for _ in range(bootstrap)])
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(gaps, [tail, 1.0 - tail])
    return PairedComparison(n=int(a.size), accuracy_a=float(a.mean()), accuracy_b=float(b.mean()), difference=float(diff.mean()),
                            ci_low=float(low), ci_high=float(high), only_a_right=only_a, only_b_right=only_b, mcnemar_p=p)


def _test_scores(name: str, results_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, labels, log_odds)`` on the test split of a saved run, sorted by review id."""
    splits, _meta = read_probs(Path(results_dir) / f"{name}{PROBS_SUFFIX}")
    test = splits["test"]
    if test["id"].size == 0:
        raise UserError(f"{name}: no test scores in its probabilities file")
    order = np.argsort(test["id"], kind="stable")
    return test["id"][order], test["label"][order].astype(np.int64), test["logit"][order]


def _same_reviews(name_a: str, name_b: str, results_dir: str | Path):
    a, b = _test_scores(name_a, results_dir), _test_scores(name_b, results_dir)
    if a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]):
        raise UserError(f"{name_a} and {name_b} scored different test reviews ({a[0].size} vs {b[0].size}): a paired comparison needs the same ones")
    if not np.array_equal(a[1], b[1]):
        raise UserError(f"{name_a} and {name_b} disagree on the labels of the same test reviews")
    return a, b


def compare_runs(name_a: str, name_b: str, results_dir: str | Path = "results", **kwargs) -> PairedComparison:
    """Paired comparison of two saved runs; they must have scored exactly the same test reviews."""
    (_ids, labels, logit_a), (_, _, logit_b) = _same_reviews(name_a, name_b, results_dir)
    return paired_comparison((logit_a > 0) == labels, (logit_b > 0) == labels, **kwargs)


# Bands of the teacher's confidence |p - 0.5|, from a coin flip to certain.
CONFIDENCE_BANDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def agreement_by_confidence(student: str, teacher: str, results_dir: str | Path = "results") -> list[dict]:
    """Where a distilled student falls short of its teacher: per band of the teacher's confidence on
    the same test reviews, how many reviews, each model's accuracy, and how often they agree.
    The last row is all reviews."""
    (_ids, labels, s_logit), (_, _, t_logit) = _same_reviews(student, teacher, results_dir)
    from scipy.special import expit  # the sigmoid that cannot overflow, as imdb_llm.probs writes prob_pos

    t_conf = np.abs(expit(t_logit) - 0.5)
    s_pred, t_pred = s_logit > 0, t_logit > 0
    rows = []
    for low, high in [*zip(CONFIDENCE_BANDS[:-1], CONFIDENCE_BANDS[1:], strict=True), (CONFIDENCE_BANDS[0], CONFIDENCE_BANDS[-1])]:
        band = (t_conf >= low) & ((t_conf < high) | (high == CONFIDENCE_BANDS[-1]))  # the top band includes 0.5
        n = int(band.sum())
        rows.append({"low": low, "high": high, "n": n,
                     **{key: float(flags[band].mean()) if n else None
                        for key, flags in (("teacher_accuracy", t_pred == labels), ("student_accuracy", s_pred == labels), ("agreement", s_pred == t_pred))}})
    return rows
