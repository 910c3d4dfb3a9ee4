"""Saved class probabilities: ``results/<name>.probs.parquet``, one row per validation and test review.

Why: an ensemble (scripts/ensemble.py) or an error analysis (docs/nbsvm.md) needs every member's
scores on the *same* reviews, long after the runs ended and without their models. So each
classifier run keeps, next to its result file:

* ``split``     -- ``validation`` or ``test``;
* ``id``        -- the review's index in its *source* split (validation rows are carved from
                   train, so their id is the train index), the stable key runs line up on;
* ``label``     -- the gold label (0 = neg, 1 = pos), so a file can be checked on its own;
* ``prob_pos``  -- P(pos), float32;
* ``logit``     -- log P(pos)/P(neg), float32: averaging these is the ensemble's "product of experts",
                   and it keeps the precision that a probability near 0 or 1 loses.

The Parquet schema metadata holds the provenance (``imdb_llm.probs`` key, JSON): the run name and
everything that decides which reviews are in validation and test (``validation_ratio``,
``split_seed``, ``max_*_samples``). Two files whose validation splits differ cannot be ensembled:
weights fit on one validation set would be scored against reviews the other model trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imdb_llm.cli import UserError
from imdb_llm.results import atomic_write

PROBS_SUFFIX = ".probs.parquet"
META_KEY = b"imdb_llm.probs"  # a file-format constant in every saved probs file: keep it if this module moves
COLUMNS = ("split", "id", "label", "prob_pos", "logit")
# What decides the membership of validation/test; the data folder's path is recorded but not compared
# (the same data may be mounted at two paths).
SPLIT_KEYS = ("validation_ratio", "split_seed", "max_eval_samples", "max_test_samples")
PROVENANCE_KEYS = SPLIT_KEYS + ("max_train_samples", "dataset_dir")


class ProbsError(UserError):
    """A missing, corrupt or mismatched probabilities file: one line naming it."""


def probs_path(name: str, results_dir: str | os.PathLike = "results") -> Path:
    return Path(results_dir) / f"{name}{PROBS_SUFFIX}"


def split_provenance(data_args: Any) -> dict[str, Any]:
    """The ``ImdbArguments`` fields that define the splits (from a dataclass or a dict)."""
    get = data_args.get if isinstance(data_args, dict) else lambda k, d=None: getattr(data_args, k, d)
    out = {k: get(k, None) for k in PROVENANCE_KEYS}
    if out["dataset_dir"] is None:
        out["dataset_dir"] = os.environ.get("IMDB_DIR")
    return out


def logits_to_log_odds(logits: np.ndarray) -> np.ndarray:
    """Two-class logits -> log-odds of class 1 (softmax of [a, b] gives sigmoid(b - a))."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected (n, 2) logits, got shape {logits.shape}")
    return logits[:, 1] - logits[:, 0]


def write_probs(
    path: str | os.PathLike,
    splits: dict[str, tuple[Sequence[int], Sequence[int], np.ndarray]],
    provenance: dict[str, Any],
) -> Path:
    """Write ``{split: (ids, labels, log_odds)}`` atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.special import expit

    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for split, (ids, labels, log_odds) in splits.items():
        log_odds = np.asarray(log_odds, dtype=np.float64)
        if not (len(ids) == len(labels) == len(log_odds)):
            raise ValueError(f"{split}: {len(ids)} ids, {len(labels)} labels, {len(log_odds)} scores")
        cols["split"] += [split] * len(ids)
        cols["id"] += [int(i) for i in ids]
        cols["label"] += [int(y) for y in labels]
        cols["logit"].append(log_odds)
        cols["prob_pos"].append(expit(log_odds))  # sigmoid that cannot overflow for large |x|
    table = pa.table({
        "split": pa.array(cols["split"]).dictionary_encode(),
        "id": pa.array(cols["id"], pa.int32()),
        "label": pa.array(cols["label"], pa.int8()),
        "prob_pos": pa.array(np.concatenate(cols["prob_pos"]) if cols["prob_pos"] else [], pa.float32()),
        "logit": pa.array(np.concatenate(cols["logit"]) if cols["logit"] else [], pa.float32()),
    })
    table = table.replace_schema_metadata({META_KEY: json.dumps(provenance, sort_keys=True).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))



def write_result_and_probs(name: str, results_dir: str | os.PathLike, splits: dict, provenance: dict, metrics: dict, *, config: dict,
                           train_seconds: float | None, log_text: str | None, extra: dict | None = None) -> tuple[Path, Path]:
    """A classification run's two files side by side: ``results/<name>.json`` (+ ``.log``, via
    :func:`imdb_llm.results.write_result`) and its probabilities ``<name>.probs.parquet`` (:func:`write_probs`)."""
    from imdb_llm.results import write_result

    probs = write_probs(probs_path(name, results_dir), splits, provenance)
    result = write_result(name, metrics, headline="test_accuracy", config=config, train_seconds=train_seconds, log_text=log_text, results_dir=results_dir, extra=extra)
    return result, probs


def read_probs(path: str | os.PathLike) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """``({split: {"id", "label", "prob_pos", "logit"}}, provenance)``; any problem -> ProbsError naming the file."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ProbsError(f"{path}: no probabilities file (rerun the model with a results_name; every classifier run writes one)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid / OSError on a truncated or non-Parquet file
        raise ProbsError(f"{path}: corrupt probabilities file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ProbsError(f"{path}: corrupt probabilities file (missing column(s) {', '.join(missing)})")
    try:
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (KeyError, ValueError) as exc:
        raise ProbsError(f"{path}: corrupt probabilities file (no provenance metadata)") from exc
    split = np.asarray(table.column("split").cast("string").to_pylist())
    data = {c: table.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS[1:]}
    out = {}
    for name in ("validation", "test"):
        mask = split == name
        out[name] = {c: v[mask] for c, v in data.items()}
        if not np.isfinite(out[name]["logit"]).all():
            raise ProbsError(f"{path}: corrupt probabilities file (non-finite scores in {name})")
        if len(np.unique(out[name]["id"])) != int(mask.sum()):
            raise ProbsError(f"{path}: corrupt probabilities file (duplicate ids in {name})")
    return out, meta
