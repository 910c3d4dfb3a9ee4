"""Preference tuning against near misses: prefer this question's answer over the answer to a
neighbouring question (issue 48).

Why: supervised fine-tuning teaches the frame of a medical answer ("the treatment of X includes
...") and the loss falls, but answer matching showed the model no better at telling the right
specifics from those of a neighbouring disease. The wrong drug is exactly what a near miss carries.
So each training record is paired with a *rejected* answer: the reference of one of the training
questions nearest to it (character 1-2-gram TF-IDF, as :mod:`.answer_match` picks distractors, but
among training records only, so no judged or carved record is ever seen).

The objective is CPO with the SimPO loss (Xu et al. 2024, arXiv:2401.08417; Meng et al. 2024,
arXiv:2405.14734), as TRL's ``CPOTrainer(loss_type="simpo")`` computes it: the supervised loss on the
chosen answer plus ``-log sigmoid(beta * (mean log p(chosen) - mean log p(rejected) - gamma/beta))``.
It needs no reference model (the mean per token already removes the length bias) and is written here
rather than taken from TRL because TRL computes the 262k-row output layer at every position, prompt
included; here, as in :mod:`imdb_llm.llm.sft.answer_loss`, only at answer positions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from imdb_llm.cli import UserError
from imdb_llm.llm.med.answer_match import nearest_questions
from imdb_llm.llm.sft.answer_loss import AnswerOnlyLossTrainer, answer_token_logprobs
from imdb_llm.llm.sft.collate import PadCollator

NEAR_DUPLICATE = 0.7  # character-bigram Jaccard of two answers above which a neighbour's answer is the same answer reworded


@dataclass
class PreferenceArguments:
    """CPO-SimPO on near-miss pairs (0 = plain supervised fine-tuning)."""

    preference_weight: float = field(default=0.0, metadata={"help": "Weight of the preference term beside the supervised loss; 0 = off."})
    preference_beta: float = field(default=2.0, metadata={"help": "SimPO beta: the scale of the mean log-probability margin."})
    preference_gamma_beta_ratio: float = field(default=0.5, metadata={"help": "SimPO gamma/beta: the margin the chosen answer must win by."})
    preference_neighbours: int = field(default=3, metadata={"help": "The rejected answer is drawn from this many nearest training questions."})

    def __post_init__(self):
        if self.preference_weight < 0 or self.preference_beta <= 0 or self.preference_neighbours < 1:
            raise UserError("--preference_weight must be >= 0, --preference_beta > 0 and --preference_neighbours >= 1")


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)}


def _same_answer(a: str, b: str) -> bool:
    x, y = _bigrams(a), _bigrams(b)
    return a == b or (bool(x | y) and len(x & y) / len(x | y) > NEAR_DUPLICATE)


def near_miss_answers(questions: Sequence[str], answers: Sequence[str], neighbours: int = 3, seed: int = 42) -> list[str | None]:
    """For each record, the answer of one of its ``neighbours`` nearest other questions (seeded
    choice; :func:`~imdb_llm.llm.med.answer_match.nearest_questions`, the distractors' rule) whose
    answer is not its own reworded; None where no other question qualifies."""
    rng = random.Random(seed)
    near = nearest_questions(questions, answers, neighbours, differs=lambda own, theirs: not _same_answer(own, theirs))
    return [rng.choice([answers[j] for j in row]) if row else None for row in near]


def attach_rejected(tokenizer, conversations: list[dict[str, Any]], args: PreferenceArguments, seed: int) -> int:
    """Adds ``rejected_input_ids``/``rejected_labels`` (the same prompt, a near-miss answer, EOS) to each
    conversation's encoding ``conv["_enc"]``; returns how many got one."""
    from imdb_llm.llm.sft.template import encode_conversation

    questions = [c.get("question", c["messages"][-2]["content"]) for c in conversations]
    answers = [c["messages"][-1]["content"] for c in conversations]
    n = 0
    for conv, rejected in zip(conversations, near_miss_answers(questions, answers, args.preference_neighbours, seed)):
        if rejected is None:
            continue
        enc = encode_conversation(tokenizer, [*conv["messages"][:-1], {"role": "assistant", "content": rejected}])
        conv["_enc"] = {**conv["_enc"], "rejected_input_ids": enc["input_ids"], "rejected_labels": enc["labels"]}
        n += 1
    return n


@dataclass
class PreferenceCollator:
    """A batch of B pairs as 2B right-padded rows, chosen first; a batch without pairs (evaluation)
    is padded as it is."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list[int]]]):
        pad = PadCollator(self.pad_token_id)
        chosen = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        if not all("rejected_input_ids" in f for f in features):
            return pad(chosen)
        rejected = [{"input_ids": f["rejected_input_ids"], "labels": f["rejected_labels"]} for f in features]
        batch = pad(chosen + rejected)
        batch["preference_pairs"] = len(features)
        return batch


def simpo_loss(model, inputs, args: PreferenceArguments) -> tuple[Any, dict[str, float]]:
    """Supervised loss on the chosen rows + weight x SimPO on the pairs; returns ``(loss, stats)``."""
    import torch
    import torch.nn.functional as F

    pairs = inputs.pop("preference_pairs")
    logp, rows = answer_token_logprobs(model, inputs)
    n_rows = inputs["labels"].shape[0]
    sums = torch.zeros(n_rows, dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)
    counts = torch.zeros(n_rows, dtype=logp.dtype, device=logp.device).index_add(0, rows, torch.ones_like(logp))
    mean = sums / counts.clamp(min=1)
    chosen_tokens = rows < pairs
    nll = -logp[chosen_tokens].sum() / chosen_tokens.sum().clamp(min=1)
    margin = mean[:pairs] - mean[pairs:]
    preference = -F.logsigmoid(args.preference_beta * (margin - args.preference_gamma_beta_ratio)).mean()
    stats = {"pair_accuracy": float((margin > 0).float().mean()), "margin": float(margin.detach().mean()), "nll": float(nll.detach())}
    return nll + args.preference_weight * preference, stats


class PreferenceTrainer(AnswerOnlyLossTrainer):
    """:class:`AnswerOnlyLossTrainer` whose training batches carry near-miss pairs (:func:`simpo_loss`);
    the logged lines gain the pairs' accuracy and mean margin since the last log."""

    def __init__(self, *args, preference: PreferenceArguments, **kwargs):
        super().__init__(*args, **kwargs)
        self.preference, self._stats = preference, []

    def _set_signature_columns_if_needed(self):
        """Keep the rejected columns: ``Trainer`` drops features the model's ``forward`` does not name."""
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*dict.fromkeys([*self._signature_columns, "rejected_input_ids", "rejected_labels"])]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "preference_pairs" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, stats = simpo_loss(model, dict(inputs), self.preference)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            # Trainer then takes the loss as already divided over the accumulated batch; this one is a
            # mean over one micro-batch, so divide here or accumulation would sum it.
            loss = loss / self.current_gradient_accumulation_steps
        self._stats.append(stats)
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if self._stats and "loss" in logs:
            for key in self._stats[0]:
                logs[key] = round(sum(s[key] for s in self._stats) / len(self._stats), 4)
            self._stats = []
        super().log(logs, *args, **kwargs)

