"""scripts/teacher_leak.py: soft-target students and the with/without-validation teachers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import teacher_leak  # scripts/ is on pytest's pythonpath

REPO = Path(__file__).resolve().parents[1]


def test_a_student_follows_its_teachers_soft_targets():
    # Feature 0 present: the teacher says positive (p 0.95); feature 1: negative (p 0.05).
    X = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1]] * 5, dtype=np.float32))
    confident = teacher_leak.fit_student(X, np.array([0.95, 0.95, 0.05, 0.05] * 5), C=10.0)
    assert list(confident.predict(sp.csr_matrix([[1.0, 0.0], [0.0, 1.0]]))) == [1, 0]
    # A teacher unsure of everything teaches nothing: the student's log-odds stay near zero.
    unsure = teacher_leak.fit_student(X, np.full(20, 0.5), C=10.0)
    assert np.all(np.abs(unsure.decision_function(X)) < 0.05)


def _run(tmp_path, *args):
    return subprocess.run([sys.executable, "scripts/teacher_leak.py", "--dataset_dir", str(REPO / "tests" / "fixtures" / "imdb"),
                           "--results_dir", str(tmp_path), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_teacher_b_is_fit_on_validation_and_teacher_a_is_not(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "imdb-teacher-leak.json").read_text(encoding="utf-8"))["metrics"]
    assert m["teacher_b_validation_accuracy"] == 1.0 > m["teacher_a_validation_accuracy"]  # B memorised the reviews it was fit on
    assert m["n_validation"] == 24 and m["n_test"] == 120
    assert m["n_student_reviews"] == 216 + 150  # train minus validation + the unlabelled reviews, nothing held out
    low, high = m["student_validation_difference_ci95_points"]
    assert low <= m["student_validation_difference_points"] <= high
    expected = 100 * (m["student_b_validation_accuracy"] - m["student_a_validation_accuracy"])
    assert abs(m["student_validation_difference_points"] - expected) < 0.01


def test_no_validation_split_is_refused_and_nothing_written(tmp_path):
    proc = _run(tmp_path, "--validation_ratio", 0)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "error: --validation_ratio must be above 0: the question is about the validation reviews"
    assert not any(tmp_path.iterdir())
