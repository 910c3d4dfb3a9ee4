"""The paired comparison of two runs on the same test reviews (imdb_llm.paired)."""

import numpy as np
import pytest
from scipy.stats import binomtest

from imdb_llm.cli import UserError
from imdb_llm.paired import agreement_by_confidence, compare_runs, paired_comparison
from imdb_llm.probs import write_probs


def test_counts_and_exact_mcnemar_by_hand():
    # 10 reviews: both right on 5, only A right on 4, only B right on 1.
    a = [1] * 5 + [1] * 4 + [0] * 1
    b = [1] * 5 + [0] * 4 + [1] * 1
    r = paired_comparison(a, b, bootstrap=500)
    assert (r.n, r.only_a_right, r.only_b_right) == (10, 4, 1)
    assert r.accuracy_a == pytest.approx(0.9) and r.accuracy_b == pytest.approx(0.6)
    assert r.difference == pytest.approx(0.3)
    # Two-sided exact binomial tail of 4 successes in 5 at p = 1/2: (1 + 5 + 5 + 1) / 32.
    assert r.mcnemar_p == pytest.approx(12 / 32)
    assert r.ci_low <= r.difference <= r.ci_high


def test_identical_models_have_no_evidence_and_a_zero_interval():
    flags = np.random.default_rng(1).random(300) < 0.8
    r = paired_comparison(flags, flags, bootstrap=200)
    assert r.mcnemar_p == 1.0 and r.difference == 0.0 and r.ci_low == 0.0 == r.ci_high


def test_a_real_gap_on_many_reviews_is_detected_and_the_interval_covers_it():
    rng = np.random.default_rng(0)
    truth_a = rng.random(5000) < 0.92
    b = truth_a.copy()
    flip = rng.choice(np.flatnonzero(truth_a), 150, replace=False)  # B loses 150 reviews A gets right
    b[flip] = False
    r = paired_comparison(truth_a, b, bootstrap=1000)
    assert r.difference == pytest.approx(150 / 5000)
    assert r.mcnemar_p == pytest.approx(binomtest(150, 150, 0.5).pvalue) and r.mcnemar_p < 1e-6
    assert 0 < r.ci_low < r.difference < r.ci_high < 0.06


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        paired_comparison([1, 0], [1, 0, 1])


def _probs(path, ids, labels, logits):
    write_probs(path, {"validation": ([], [], np.array([])), "test": (ids, labels, np.asarray(logits, float))}, {"run": path.stem})


def test_compare_runs_lines_up_reviews_by_id(tmp_path):
    # Same reviews in another order: B's file is shuffled, the comparison must not care.
    ids, labels = [3, 1, 2, 0], [1, 0, 1, 0]
    _probs(tmp_path / "a.probs.parquet", ids, labels, [2.0, -1.0, 1.0, 3.0])        # wrong on id 0
    _probs(tmp_path / "b.probs.parquet", ids[::-1], labels[::-1], [-2.0, -1.0, -1.0, 2.0])  # wrong on id 2 (logit -1, label 1)
    r = compare_runs("a", "b", tmp_path, bootstrap=100)
    assert (r.n, r.only_a_right, r.only_b_right) == (4, 1, 1)
    assert r.accuracy_a == r.accuracy_b == pytest.approx(0.75)


def test_compare_runs_refuses_different_reviews(tmp_path):
    _probs(tmp_path / "a.probs.parquet", [0, 1], [0, 1], [-1.0, 1.0])
    _probs(tmp_path / "b.probs.parquet", [0, 2], [0, 1], [-1.0, 1.0])
    with pytest.raises(UserError, match="different test reviews"):
        compare_runs("a", "b", tmp_path)


def test_agreement_by_confidence_bands_the_teachers_confidence(tmp_path):
    # Teacher log-odds chosen so that |p - 0.5| falls in known bands: logit 0.2 -> 0.05, 1.0 -> 0.23, 5.0 -> 0.49.
    ids, labels = [0, 1, 2, 3, 4], [1, 0, 1, 1, 0]
    _probs(tmp_path / "teacher.probs.parquet", ids, labels, [0.2, -1.0, 5.0, -5.0, -5.0])  # wrong on id 3
    _probs(tmp_path / "student.probs.parquet", ids[::-1], labels[::-1], [1.0, 2.0, 3.0, 1.0, 1.0][::-1])  # wrong on ids 1 and 4
    rows = agreement_by_confidence("student", "teacher", tmp_path)
    by_band = {(r["low"], r["high"]): r for r in rows}
    assert [r["n"] for r in rows] == [1, 0, 1, 0, 3, 5]
    assert by_band[(0.0, 0.1)] == {"low": 0.0, "high": 0.1, "n": 1, "teacher_accuracy": 1.0, "student_accuracy": 1.0, "agreement": 1.0}
    assert by_band[(0.1, 0.2)]["agreement"] is None  # an empty band has no rates
    assert by_band[(0.2, 0.3)] == {"low": 0.2, "high": 0.3, "n": 1, "teacher_accuracy": 1.0, "student_accuracy": 0.0, "agreement": 0.0}
    top = by_band[(0.4, 0.5)]  # ids 2, 3, 4: teacher right, wrong, right; student right, right, wrong
    assert top["teacher_accuracy"] == top["student_accuracy"] == pytest.approx(2 / 3) and top["agreement"] == pytest.approx(1 / 3)
    assert by_band[(0.0, 0.5)]["agreement"] == pytest.approx(2 / 5)


def test_agreement_refuses_different_labels(tmp_path):
    _probs(tmp_path / "a.probs.parquet", [0, 1], [0, 1], [-1.0, 1.0])
    _probs(tmp_path / "b.probs.parquet", [0, 1], [0, 0], [-1.0, 1.0])
    with pytest.raises(UserError, match="disagree on the labels"):
        agreement_by_confidence("a", "b", tmp_path)
