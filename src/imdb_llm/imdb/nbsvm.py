"""NBSVM-style classifier: a linear model on n-gram features scaled by Naive Bayes log-count ratios.

Wang & Manning (2012), "Baselines and Bigrams": multiply each binary feature by

    r = log( (p / |p|_1) / (q / |q|_1) ),   p = alpha + sum of positive rows,  q = alpha + sum of negative rows

then train a discriminative linear model on the scaled features. Why it works: ``r`` is the Naive
Bayes weight of each feature, so the linear model starts from NB's view of which n-grams matter
(a strong prior when most of millions of n-grams are seen a handful of times) and only has to
correct it; the L2 penalty then pulls weights towards NB's instead of towards zero. We use
logistic regression rather than an SVM so the model gives probabilities an ensemble can use.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

# Tokens: words (with inner apostrophes: don't) and ! / ? (sentiment-bearing punctuation).
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b|[!?]"


def nb_log_count_ratio(X, y, alpha: float = 1.0) -> np.ndarray:
    """Per-feature NB log-count ratio ``r`` (see module docstring); ``y`` in {0, 1}."""
    y = np.asarray(y)
    if set(np.unique(y)) - {0, 1} or len(np.unique(y)) != 2:
        raise ValueError("nb_log_count_ratio needs both labels 0 and 1, and nothing else")
    X = sp.csr_matrix(X)
    p = alpha + np.asarray(X[y == 1].sum(axis=0)).ravel()
    q = alpha + np.asarray(X[y == 0].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression on NB-scaled features (the features should be binary, i.e. presence)."""

    def __init__(self, C: float = 1.0, alpha: float = 1.0, max_iter: int = 1000, random_state: int | None = None):
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state  # liblinear's dual solver visits the reviews in a random order

    def fit(self, X, y):
        self.r_ = nb_log_count_ratio(X, y, self.alpha).astype(np.float32)
        # liblinear's dual solver: fast when features (millions of n-grams) far outnumber reviews.
        self.lr_ = LogisticRegression(C=self.C, solver="liblinear", dual=True, max_iter=self.max_iter, random_state=self.random_state)
        self.lr_.fit(self._scale(X), y)
        self.classes_ = self.lr_.classes_
        return self

    def _scale(self, X):
        return sp.csr_matrix(X).multiply(self.r_).tocsr()

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of class 1."""
        return self.lr_.decision_function(self._scale(X))

    def predict_proba(self, X) -> np.ndarray:
        return self.lr_.predict_proba(self._scale(X))

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


def ngram_orders(feature_names) -> np.ndarray:
    """n of each n-gram feature name (CountVectorizer joins the tokens of an n-gram with spaces)."""
    return np.fromiter((name.count(" ") + 1 for name in feature_names), dtype=np.int8, count=len(feature_names))
