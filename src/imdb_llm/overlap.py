"""Saved sibling scores (which validation reviews share a movie with train) and what they say about a run.

``scripts/movie_overlap.py`` computes them (``imdb_llm.imdb.movie_overlap``) and saves
``results/imdb-movie-overlap.validation.parquet``: review id, sibling score, and whether it passed the
threshold. The report splits any run's saved validation accuracy by them, next to its test accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError
from imdb_llm.probs import PROBS_SUFFIX, read_probs
from imdb_llm.results import atomic_write

RESULT_NAME = "imdb-movie-overlap"
SCORES_SUFFIX = ".validation.parquet"


def write_scores(path: str | Path, ids: np.ndarray, scores: np.ndarray, has_sibling: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": pa.array(ids, pa.int32()), "sibling_score": pa.array(scores, pa.float32()),
                      "has_sibling": pa.array(np.asarray(has_sibling, dtype=bool))})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_scores(path: str | Path) -> dict[int, bool]:
    """``{validation review id: has a sibling in train}`` as scripts/movie_overlap.py saved them."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["id", "has_sibling"])
    except Exception as exc:  # missing file, not Parquet, missing column
        raise UserError(f"{path}: cannot read sibling scores ({str(exc).splitlines()[0]}); rerun make imdb-movie-overlap") from exc
    return dict(zip(table.column("id").to_pylist(), table.column("has_sibling").to_pylist()))


def accuracy_by_sibling(correct: np.ndarray, has_sibling: np.ndarray) -> dict[str, float | int | None]:
    """Validation accuracy on the reviews with and without a sibling in train."""
    correct, has_sibling = np.asarray(correct, dtype=bool), np.asarray(has_sibling, dtype=bool)

    def acc(mask):
        return float(correct[mask].mean()) if mask.any() else None

    return {"accuracy": acc(np.ones_like(correct)), "with_sibling": acc(has_sibling), "n_with_sibling": int(has_sibling.sum()),
            "without_sibling": acc(~has_sibling), "n_without_sibling": int((~has_sibling).sum())}


def run_by_sibling(name: str, siblings: dict[int, bool], results_dir: str | Path = "results") -> dict[str, float | int | None]:
    """A saved run's validation accuracy with and without a sibling in train, and its test accuracy.

    Every validation review the run scored must have a sibling score: a run carved with another
    split seed or ratio is refused rather than compared on the wrong reviews."""
    splits, _ = read_probs(Path(results_dir) / f"{name}{PROBS_SUFFIX}")
    val, test = splits["validation"], splits["test"]
    if val["id"].size == 0:
        raise UserError(f"{name}: no validation scores in its probabilities file")
    unknown = [int(i) for i in val["id"] if int(i) not in siblings]
    if unknown:
        raise UserError(f"{name}: {len(unknown)} validation review(s) (e.g. id {unknown[0]}) have no sibling score: "
                        "its validation was carved differently from make imdb-movie-overlap's")
    correct = (val["logit"] > 0) == val["label"].astype(bool)
    has_sibling = np.array([siblings[int(i)] for i in val["id"]], dtype=bool)
    test_correct = (test["logit"] > 0) == test["label"].astype(bool)
    return {**accuracy_by_sibling(correct, has_sibling), "test_accuracy": float(test_correct.mean()) if test_correct.size else None}
