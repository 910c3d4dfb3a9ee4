"""Ensembles of saved runs: line up ``results/<run>.probs.parquet`` files by review id, fit weights
on validation, score test once.

Why stacking on log-odds: a weighted sum of members' log-odds is a weighted product of their
probabilities ("product of experts"), so a confident member can overrule an unsure one, which a
plain probability average cannot. Fitting the weights by logistic regression on the validation
log-odds also rescales members whose scores live on different scales (an SVM margin, a network's
logits) and gives a weaker or redundant member a small weight. With a handful of members and
thousands of validation reviews there is nothing to overfit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError
from imdb_llm.probs import SPLIT_KEYS, probs_path, read_probs


@dataclass
class Member:
    name: str
    path: Path
    provenance: dict
    splits: dict  # {split: {"id", "label", "prob_pos", "logit"}}, sorted by id


@dataclass
class Aligned:
    names: list[str]
    ids: dict  # {split: ids}
    labels: dict  # {split: labels}
    logits: dict  # {split: (n, members) log-odds}

    def subset(self, columns: list[int]) -> "Aligned":
        """The same reviews with only the members in ``columns``."""
        return Aligned([self.names[c] for c in columns], self.ids, self.labels, {s: v[:, columns] for s, v in self.logits.items()})


def load_members(names: list[str], results_dir: str = "results") -> list[Member]:
    """Read every member's file (one-line errors name the file) and check their splits agree."""
    if len(names) < 1:
        raise UserError("--runs needs at least one run name")
    if len(set(names)) != len(names):
        raise UserError(f"--runs lists a run twice: {' '.join(names)}")
    members = []
    for name in names:
        path = probs_path(name, results_dir)
        splits, meta = read_probs(path)
        if meta.get("validation_in_sample"):
            raise UserError(f"{path}: its validation scores were fit on validation (an ensemble); it cannot be a member")
        if not len(splits["validation"]["id"]):
            raise UserError(f"{path}: no validation scores (trained with validation_ratio 0?); weights are fit on validation")
        splits = {split: sorted_by_id(rows) for split, rows in splits.items()}  # by id, so rows line up by position
        members.append(Member(name, path, meta, splits))
    check_same_splits(members)
    return members


def sorted_by_id(split: dict) -> dict:
    """A ``read_probs`` split (``{"id", "label", "prob_pos", "logit"}``) with its rows in id order."""
    order = np.argsort(split["id"], kind="stable")
    return {key: values[order] for key, values in split.items()}


def check_same_splits(members: list[Member]) -> None:
    """Refuse members whose validation or test reviews differ: weights would be fit on reviews a member trained on."""
    first = members[0]
    for other in members[1:]:
        diffs = [f"{k} {first.provenance.get(k)} vs {other.provenance.get(k)}" for k in SPLIT_KEYS if first.provenance.get(k) != other.provenance.get(k)]
        if diffs:
            raise UserError(f"{first.name} and {other.name} have different validation/test splits ({', '.join(diffs)}); rerun one with the other's split")
        for split in ("validation", "test"):
            a, b = first.splits[split], other.splits[split]
            if not np.array_equal(a["id"], b["id"]):
                raise UserError(f"{first.name} and {other.name} scored different {split} reviews ({len(a['id'])} vs {len(b['id'])} ids); rerun one with the other's split")
            if not np.array_equal(a["label"], b["label"]):
                raise UserError(f"{first.name} and {other.name} disagree on {split} labels for the same ids (different data?)")


def align(members: list[Member]) -> Aligned:
    first = members[0].splits
    return Aligned(
        names=[m.name for m in members],
        ids={s: first[s]["id"] for s in ("validation", "test")},
        labels={s: first[s]["label"].astype(int) for s in ("validation", "test")},
        logits={s: np.stack([m.splits[s]["logit"].astype(np.float64) for m in members], axis=1) for s in ("validation", "test")},
    )


def fit_stacker(val_logits: np.ndarray, val_labels: np.ndarray, C: float = 1.0):
    """Logistic regression on the members' validation log-odds: coef_ are the member weights."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=1000).fit(val_logits, val_labels)


def cross_validated_accuracy(val_logits: np.ndarray, val_labels: np.ndarray, C: float = 1.0, folds: int = 5, seed: int = 0) -> float:
    """The stacker's accuracy on validation reviews it was not fit on (k-fold): an honest pre-test estimate."""
    from sklearn.model_selection import StratifiedKFold

    correct = 0
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(val_logits, val_labels):
        model = fit_stacker(val_logits[train], val_labels[train], C)
        correct += int((model.predict(val_logits[held]) == val_labels[held]).sum())
    return correct / len(val_labels)


def repeated_cv_accuracy(val_logits: np.ndarray, val_labels: np.ndarray, C: float = 1.0, folds: int = 5, repeats: int = 10) -> float:
    """``cross_validated_accuracy`` averaged over ``repeats`` fold shuffles: one 5-fold split of
    2,500 reviews moves by a few reviews from shuffle to shuffle."""
    return float(np.mean([cross_validated_accuracy(val_logits, val_labels, C, folds, seed) for seed in range(repeats)]))


def select_members(val_logits: np.ndarray, val_labels: np.ndarray, names: list[str], C: float = 1.0, folds: int = 5,
                   repeats: int = 10) -> tuple[list[int], list[dict]]:
    """Every subset of the members, scored by k-fold cross-validation on validation (averaged over
    ``repeats`` fold shuffles, since a 2,500-review validation set makes one split noisy); returns the
    best subset's column indices (the smaller subset on a tie) and the table of all of them."""
    from itertools import combinations

    scored = []
    for k in range(1, len(names) + 1):
        for cols in combinations(range(len(names)), k):
            acc = repeated_cv_accuracy(val_logits[:, list(cols)], val_labels, C, folds, repeats)
            scored.append((round(acc, 5), list(cols)))
    _, best = max(scored, key=lambda s: (s[0], -len(s[1])))
    return best, [{"members": [names[c] for c in cols], "validation_accuracy_cv": acc} for acc, cols in scored]


def parse_refits(pairs: list[str]) -> dict[str, str]:
    """``["member=refit", ...]`` -> ``{member: refit}``."""
    out = {}
    for pair in pairs:
        member, sep, refit = pair.partition("=")
        if not sep or not member or not refit or member in out:
            raise UserError(f"--refits {pair!r}: give each member once, as member=refit (e.g. imdb-nbsvm=imdb-nbsvm-full; "
                            f"member=member: it scores test itself)")
        out[member] = refit
    return out


def refit_test_logits(member: Member, refit: str, results_dir: str = "results") -> np.ndarray:
    """The test log-odds of ``refit`` (``member``'s recipe retrained on all of train), in ``member``'s row order.

    Why refit: the weights must be fit on scores of models that never saw the validation reviews,
    but the models that score test need not have been kept from them. scikit-learn's
    ``StackingClassifier`` does the same: the final estimator learns from held-out predictions, the
    base estimators are then refit on all the data.

    ``refit == member.name`` says the member scores test itself: a recipe too long to retrain on
    the CPU (a fine-tuned pretrained model) is kept as it is, and the mapping says so explicitly."""
    if refit == member.name:
        return member.splits["test"]["logit"].astype(np.float64)
    path = probs_path(refit, results_dir)
    splits, meta = read_probs(path)
    if meta.get("validation_ratio") != 0 or len(splits["validation"]["id"]):
        raise UserError(f"{path}: trained with validation_ratio {meta.get('validation_ratio')}; a refit of {member.name} is trained on all of train (validation_ratio 0)")
    if meta.get("max_test_samples") != member.provenance.get("max_test_samples"):
        raise UserError(f"{member.name} and its refit {refit} have different test splits (max_test_samples "
                        f"{member.provenance.get('max_test_samples')} vs {meta.get('max_test_samples')})")
    test = sorted_by_id(splits["test"])
    if not np.array_equal(test["id"], member.splits["test"]["id"]) or not np.array_equal(test["label"], member.splits["test"]["label"]):
        raise UserError(f"{member.name} and its refit {refit} scored different test reviews; rerun the refit with the member's data")
    return test["logit"].astype(np.float64)
