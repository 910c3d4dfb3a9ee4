"""Which validation reviews share a movie with the training reviews?

IMDB puts all reviews of a movie on one side, train or test (Maas et al. 2011), so a test review
never has a sibling in train. Validation carved at random from train does: most of its reviews
have reviews of the same movie among the training ones. A model that learns a movie's title, cast
and plot words is then rewarded on validation and not on test, and validation overstates test.

The hub's IMDB has no movie ids, but its row order keeps them: reviews were numbered movie by
movie, so two reviews a few rows apart often share rare words (names, titles), and two reviews 30
or more rows apart almost never do (``offset_profile`` measures this). A review's *sibling score*
is its highest TF-IDF cosine, over rare words only, with any training review within ``window``
rows of it; above ``SIBLING_THRESHOLD`` it very likely has a review of its own movie in train.
Below it, it may still have one that shares no rare word, so the split is conservative: the
"no sibling" side is the closer of the two to a movie-disjoint validation set, not equal to it.
``imdb_llm.overlap`` saves the scores and splits a run's validation accuracy by them.
"""

from __future__ import annotations

import numpy as np

SIBLING_THRESHOLD = 0.15
TWIN_THRESHOLD = 0.25  # nearest review among tens of thousands: a stricter bar than among 40 neighbours
WINDOW = 20  # IMDB keeps at most 30 reviews per movie; at 20 rows apart 2 % of pairs still share a movie's words


def rare_word_vectorizer(texts: list[str], max_df: float = 0.02):
    """TF-IDF (L2-normalised rows) over the words of ``texts`` in at most 2 % of them: names and titles, not sentiment."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(min_df=2, max_df=max_df, sublinear_tf=True).fit(texts)


def _row_cosines(vectors, offset: int) -> np.ndarray:
    """Cosine of each row i with row i + offset (the rows are unit length)."""
    return np.asarray(vectors[:-offset].multiply(vectors[offset:]).sum(axis=1)).ravel()


def offset_profile(vectors, offsets: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 100, 1000)) -> dict[int, float]:
    """Fraction of review pairs ``offset`` rows apart whose cosine passes the threshold."""
    return {k: float((_row_cosines(vectors, k) > SIBLING_THRESHOLD).mean()) for k in offsets if k < vectors.shape[0]}


def sibling_scores(vectors, in_train: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """For every row, its highest cosine with a row marked ``in_train`` at most ``window`` rows away."""
    in_train = np.asarray(in_train, dtype=bool)
    if in_train.shape != (vectors.shape[0],):
        raise ValueError(f"in_train has shape {in_train.shape}, expected ({vectors.shape[0]},)")
    best = np.zeros(vectors.shape[0])
    for k in range(1, min(window, vectors.shape[0] - 1) + 1):
        cos = _row_cosines(vectors, k)  # pair (i, i + k)
        best[:-k] = np.maximum(best[:-k], np.where(in_train[k:], cos, 0.0))
        best[k:] = np.maximum(best[k:], np.where(in_train[:-k], cos, 0.0))
    return best


def share_with_twin(queries, pool, threshold: float = 0.25, chunk: int = 250) -> float:
    """Fraction of ``queries`` rows whose nearest ``pool`` row (anywhere, not only nearby) passes ``threshold``.

    Compared across query sets against the same pool, it says which set shares movies with the pool:
    validation against train (yes), test against train (IMDB says no), either against the unlabelled reviews."""
    best = np.concatenate([(queries[i:i + chunk] @ pool.T).max(axis=1).toarray().ravel() for i in range(0, queries.shape[0], chunk)])
    return float((best > threshold).mean())
