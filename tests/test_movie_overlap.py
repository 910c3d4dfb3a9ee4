"""The movie-overlap measure: neighbours in file order, the per-run split of validation, the script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imdb_llm.cli import UserError
from imdb_llm.imdb.movie_overlap import SIBLING_THRESHOLD, offset_profile, rare_word_vectorizer, sibling_scores
from imdb_llm.overlap import read_scores, run_by_sibling, write_scores
from imdb_llm.probs import write_probs
from imdb_llm.report.pages import render_template

REPO = Path(__file__).resolve().parents[1]

# Rows 0-2 review one movie (its names recur), rows 3-5 another, the rest share no rare word.
REVIEWS = [
    "Zorblax Quintavius steals every scene of Krandor Nights, good fun",
    "Krandor Nights is dull but Zorblax Quintavius is great",
    "I watched Krandor Nights to see Zorblax Quintavius sing",
    "Velmora Pike shines in The Ashgrove Hours",
    "The Ashgrove Hours wastes Velmora Pike on a thin plot",
    "Velmora Pike alone makes The Ashgrove Hours worth it",
    "a film about trains and rain",
    "nothing happens during two long acts",
    "my dog could act better",
    "cinema at its most ordinary",
]


def _vectors():
    return rare_word_vectorizer(REVIEWS, max_df=0.5).transform(REVIEWS)  # max_df 0.5: the corpus is ten reviews


def test_a_review_whose_movie_neighbours_are_in_train_has_a_sibling_and_a_lone_one_does_not():
    in_train = np.ones(len(REVIEWS), dtype=bool)
    in_train[[1, 7]] = False  # held out: one review of a movie with two more in train, one unrelated review
    scores = sibling_scores(_vectors(), in_train, window=3)
    assert scores[1] > SIBLING_THRESHOLD and scores[7] < SIBLING_THRESHOLD
    # A neighbour beyond the window does not count: review 2's nearest same-movie train review is 2 rows away.
    in_train[[0, 2]] = [True, False]
    assert sibling_scores(_vectors(), in_train, window=1)[2] < SIBLING_THRESHOLD and sibling_scores(_vectors(), in_train, window=2)[2] > SIBLING_THRESHOLD
    with pytest.raises(ValueError, match="in_train has shape"):
        sibling_scores(_vectors(), in_train[:-1])


def test_offset_profile_sees_movies_only_in_nearby_rows():
    profile = offset_profile(_vectors(), offsets=(1, 6))
    assert profile[1] == pytest.approx(4 / 9)  # pairs (0,1) (1,2) (3,4) (4,5) of the 9 one row apart
    assert profile[6] == 0.0


def _saved_run(folder: Path, name: str, val_ids, val_right, test_right):
    labels = [1] * len(val_ids)
    write_probs(folder / f"{name}.probs.parquet",
                {"validation": (val_ids, labels, np.where(val_right, 3.0, -3.0)),
                 "test": (list(range(len(test_right))), [0] * len(test_right), np.where(test_right, -3.0, 3.0))}, {"run": name})


def test_a_run_is_split_by_sibling_and_one_carved_differently_is_refused(tmp_path):
    write_scores(tmp_path / "overlap.parquet", np.array([10, 11, 12, 13]), np.array([0.9, 0.5, 0.0, 0.1]), [True, True, False, False])
    scores = read_scores(tmp_path / "overlap.parquet")
    _saved_run(tmp_path, "run", [10, 11, 12, 13], [True, True, False, True], [True, False])
    split = run_by_sibling("run", scores, tmp_path)
    assert split == {"accuracy": 0.75, "with_sibling": 1.0, "n_with_sibling": 2, "without_sibling": 0.5, "n_without_sibling": 2, "test_accuracy": 0.5}
    _saved_run(tmp_path, "other-split", [10, 99], [True, True], [True])
    with pytest.raises(UserError, match=r"1 validation review\(s\) \(e.g. id 99\) have no sibling score"):
        run_by_sibling("other-split", scores, tmp_path)
    with pytest.raises(UserError, match="cannot read sibling scores"):
        read_scores(tmp_path / "missing.parquet")


def test_overlap_placeholder_tabulates_runs_and_says_what_is_missing(tmp_path):
    results = {"run": {"metrics": {}}}
    assert "make imdb-movie-overlap" in render_template("{{overlap:run}}", results, set(), results_dir=tmp_path)
    write_scores(tmp_path / "imdb-movie-overlap.validation.parquet", np.array([1, 2]), np.array([0.9, 0.0]), [True, False])
    assert "not yet measured" in render_template("{{overlap:run}}", results, set(), results_dir=tmp_path)
    _saved_run(tmp_path, "run", [1, 2], [True, False], [True, True, False, False])
    table = render_template("{{overlap:run,not-run-yet}}", results, set(), results_dir=tmp_path).splitlines()
    assert len(table) == 3  # header, rule, the one run with saved probabilities
    assert table[2] == "| [`run`](../results/run.json) | 50.00 % | 100.00 % (n=1) | 0.00 % (n=1) | 50.00 % | +0.00 points |"


def _script(*args):
    return subprocess.run([sys.executable, "scripts/movie_overlap.py", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_script_marks_the_carved_validation_reviews(tmp_path, imdb_dir):
    from imdb_llm.imdb.data import load_imdb

    proc = _script("--dataset_dir", imdb_dir, "--results_dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "imdb-movie-overlap.json").read_text(encoding="utf-8"))
    expected_ids = sorted(load_imdb(dataset_dir=str(imdb_dir))["validation"]["id"])
    siblings = read_scores(tmp_path / "imdb-movie-overlap.validation.parquet")
    assert sorted(siblings) == expected_ids and sum(siblings.values()) == result["metrics"]["n_validation_with_sibling"]
    metrics = result["metrics"]
    assert metrics["n_validation"] == len(expected_ids) and 0 <= metrics["n_validation_with_sibling"] <= len(expected_ids)
    assert set(metrics["pairs_above_threshold_by_offset"]) == {"1", "2", "5", "10", "20", "30", "100"}  # 1000 > the fixture's 240 rows
    assert all(0.0 <= metrics[f"{q}_with_twin_in_{p}"] <= 1.0 for q in ("validation", "test") for p in ("train", "unlabelled"))


def test_the_script_refuses_a_bad_window_and_writes_nothing(tmp_path, imdb_dir):
    proc = _script("--dataset_dir", imdb_dir, "--results_dir", tmp_path, "--window", 0)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1] == "error: --window must be at least 1, got 0"
    assert not any(tmp_path.iterdir())
