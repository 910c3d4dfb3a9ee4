"""Knowledge distillation for the self-built classifiers: a teacher's scores on IMDB train and
unlabelled reviews, joined by review id, and the soft-target loss a student learns them with.

Why: 25,000 labelled reviews are few for a transformer trained from scratch, while the 50,000
unlabelled ones are free. A teacher trained on IMDB alone (the no-pretraining ensemble, 92.7 %)
labels them, softly: a probability of 0.6 tells the student the review is mixed, which a hard
label cannot (Hinton et al. 2015). On labelled reviews the target mixes the gold label with the
teacher's probability (``alpha``).

The teacher file (``scripts/score_teacher.py``) is Parquet, one row per review:

* ``split``  -- ``train`` (train minus validation) or ``unsupervised``;
* ``id``     -- the review's index in its source split (imdb_llm.imdb.data);
* ``logit``  -- the teacher's log-odds of ``pos``.

Its schema metadata (JSON) names the teacher, its members and its test accuracy, and how long the
scoring took (it counts in the student's ``train_seconds``). It must hold exactly the reviews the
student trains on: a missing id leaves a review without a target, and an extra one means the
teacher was built for other splits (its validation reviews would be inside the student's
training set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from imdb_llm.cli import UserError
from imdb_llm.imdb.data import drop_texts_in
from imdb_llm.results import atomic_write

META_KEY = b"imdb_llm.teacher"
TEACHER_SPLITS = ("train", "unsupervised")
# Reviews no training stage may read (even as the same text under another id): see data.pretraining_texts.
HELD_OUT = ("validation", "test")


class TeacherError(UserError):
    """A teacher file that cannot be used: one line naming it and the problem."""


def distillation_sets(dsets, with_unlabelled: bool = True) -> dict:
    """The reviews a student learns from, ``{"train": ..., "unsupervised": ...}``: train (minus
    validation) and the unlabelled reviews, less any text that is also a validation or test review.
    The teacher scores exactly these (the same function on the same splits), so ids line up."""
    splits = TEACHER_SPLITS if with_unlabelled and "unsupervised" in dsets else ("train",)
    return {split: drop_texts_in(dsets[split], dsets, HELD_OUT) for split in splits}


def write_teacher(path: str | os.PathLike, logits: dict[str, tuple[Any, np.ndarray]], meta: dict[str, Any]) -> Path:
    """``logits = {split: (ids, log_odds)}`` -> the teacher file, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    splits, ids, scores = [], [], []
    for split, (split_ids, log_odds) in logits.items():
        if split not in TEACHER_SPLITS:
            raise ValueError(f"teacher split {split!r} is not one of {TEACHER_SPLITS}")
        if len(split_ids) != len(log_odds):
            raise ValueError(f"{split}: {len(split_ids)} ids for {len(log_odds)} scores")
        splits += [split] * len(split_ids)
        ids.append(np.asarray(split_ids, dtype=np.int32))
        scores.append(np.asarray(log_odds, dtype=np.float32))
    table = pa.table({"split": pa.array(splits).dictionary_encode(), "id": pa.array(np.concatenate(ids)), "logit": pa.array(np.concatenate(scores))})
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_teacher(path: str | os.PathLike) -> tuple[dict[str, dict[int, float]], dict[str, Any]]:
    """``({split: {id: log_odds}}, meta)``; a missing or unreadable file is a one-line TeacherError."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"{path}: no teacher file (make imdb-teacher writes it)")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
    except (KeyError, ValueError, OSError) as exc:
        raise TeacherError(f"{path}: not a teacher file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    split = np.asarray(table.column("split").cast("string").to_pylist())
    ids, logits = table.column("id").to_numpy(), table.column("logit").to_numpy()
    if not np.isfinite(logits).all():
        raise TeacherError(f"{path}: non-finite teacher scores")
    out = {}
    for name in TEACHER_SPLITS:
        mask = split == name
        out[name] = dict(zip(ids[mask].tolist(), logits[mask].tolist()))
        if len(out[name]) != int(mask.sum()):
            raise TeacherError(f"{path}: review ids repeated in split {name}")
    return out, meta


def attach_teacher(dataset, split: str, teacher: dict[str, dict[int, float]], path: str | os.PathLike = "teacher"):
    """``dataset`` with a ``teacher_logit`` column, joined on ``id``; the ids of both must be the same set."""
    scores = teacher.get(split, {})
    ids = [int(i) for i in dataset["id"]]
    missing = [i for i in ids if i not in scores]
    if missing:
        raise TeacherError(f"{path}: no teacher score for {len(missing)} {split} review(s) (first id {missing[0]}); "
                           "score the teacher on the student's splits (same validation_ratio, split_seed, sample limits)")
    extra = sorted(set(scores) - set(ids))
    if extra:
        raise TeacherError(f"{path}: {len(extra)} {split} review(s) the student does not train on (first id {extra[0]}); "
                           "the teacher was scored on other splits (another validation_ratio or split_seed?)")
    return dataset.add_column("teacher_logit", [float(scores[i]) for i in ids])


def soft_targets(teacher_logit: np.ndarray, gold: np.ndarray | None, alpha: float, temperature: float) -> np.ndarray:
    """(n, 2) target distributions: the teacher's P(neg), P(pos) at ``temperature``, mixed with the
    one-hot gold label where there is one (``alpha`` = the teacher's share; -1 = no gold label)."""
    p_pos = 1.0 / (1.0 + np.exp(-np.asarray(teacher_logit, dtype=np.float64) / temperature))
    target = np.stack([1.0 - p_pos, p_pos], axis=1)
    if gold is not None:
        gold = np.asarray(gold)
        labelled = gold >= 0
        one_hot = np.eye(2)[np.where(labelled, gold, 0)]
        target[labelled] = alpha * target[labelled] + (1.0 - alpha) * one_hot[labelled]
    return target.astype(np.float32)


def distillation_loss(logits, targets, temperature: float = 1.0):
    """Mean cross-entropy of the student's softened distribution against soft targets, times T^2
    so the gradient scale does not shrink as T grows (Hinton et al. 2015, section 2)."""
    import torch.nn.functional as F

    log_probs = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(targets.float() * log_probs).sum(dim=-1).mean() * temperature**2


def distillation_trainer_class():
    """``Trainer`` whose training loss is :func:`distillation_loss` on the batch's ``soft_labels``;
    evaluation (no soft labels) keeps the model's own loss on gold labels."""
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides by the accumulation steps

        def __init__(self, *args, temperature: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.temperature = temperature

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "soft_labels" not in self._signature_columns:
                self._signature_columns.append("soft_labels")  # not a forward() argument: keep the column

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "soft_labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            targets = inputs.pop("soft_labels")
            inputs.pop("labels", None)
            outputs = model(**inputs)
            loss = distillation_loss(outputs.logits, targets, self.temperature)
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


class SoftLabelCollator:
    """Pads token ids as ``DataCollatorWithPadding`` does and stacks the ``soft_labels`` pairs."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = 8):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        soft = [f.pop("soft_labels") for f in features] if "soft_labels" in features[0] else None
        batch = self.pad(features)
        if soft is not None:
            batch["soft_labels"] = torch.tensor(soft, dtype=torch.float32)
        return batch
