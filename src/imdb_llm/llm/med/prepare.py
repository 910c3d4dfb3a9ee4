"""The medical recipe's data steps inside ``scripts/sft_qlora.py``: clean the records, then ground
every question in retrieved training records (:mod:`.retrieval`).

Order matters for honesty: the index is built from the records trained on, after the carve, so a
carved validation record and a judged record are never in it, and each training record is grounded
in *other* records (:meth:`~imdb_llm.llm.med.retrieval.KnowledgeIndex.search` skips its own row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainerCallback

from imdb_llm.llm.med.answer_match import answer_match
from imdb_llm.llm.med.clean import clean_conversations
from imdb_llm.llm.med.preference import PreferenceArguments
from imdb_llm.llm.med.retrieval import KnowledgeIndex, RetrievalArguments, qa_pairs, with_retrieval
from imdb_llm.llm.prompts import render_prompt
from imdb_llm.llm.sft.data import seeded_subset


@dataclass
class MedicalDataArguments(RetrievalArguments, PreferenceArguments):
    """Cleaning, retrieval and near-miss preference pairs for single-turn medical records (all off by default)."""

    clean_records: bool = field(default=False, metadata={"help": "Drop NaN ages, answers the question states, answers under 4 "
                                                                 "characters and exact duplicates (counted in the data report)."})
    answer_only_logits: bool = field(default=False, metadata={"help": "Compute the output layer only at answer positions in training "
                                                                      "(same loss; pays where the vocabulary is large)."})
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the input embedding (and a tied output layer) frozen."})
    lora_bf16_base: bool = field(default=False, metadata={"help": "LoRA on a CPU: keep the frozen base in bf16 (no fp32 -> bf16 cast "
                                                                   "of every weight at every step under autocast)."})
    answer_match_samples: int = field(default=0, metadata={"help": "At every evaluation, answer matching on this many of the loss records "
                                                                   "(eval_answer_match: a metric_for_best_model that measures correctness); 0 = off."})

    def __post_init__(self):
        RetrievalArguments.__post_init__(self)
        PreferenceArguments.__post_init__(self)


def clean_loaded(conversations: list, report, args: MedicalDataArguments) -> list:
    """``conversations`` without unfit records when ``--clean_records`` (each reason counted in ``report``)."""
    return clean_conversations(conversations, report) if args.clean_records else conversations


def ground_all(data: dict, args: MedicalDataArguments) -> KnowledgeIndex | None:
    """Put the retrieved records into every question of ``data``; returns the index (None when off)."""
    if not args.retrieval_k:
        return None
    index = KnowledgeIndex(qa_pairs(data["train"]), args.retrieval_name_weight)
    data["train"] = with_retrieval(data["train"], index, args, own_rows=range(len(data["train"])))
    for name in ("loss", "search", "judge"):
        data[name] = with_retrieval(data[name], index, args)
    print(f"retrieval: top {args.retrieval_k} of {len(index)} training records in every prompt", flush=True)
    return index


class AnswerMatchCallback(TrainerCallback):
    """Adds ``eval_answer_match`` to every evaluation: answer matching (:mod:`.answer_match`) on the
    held-out loss records, with the prompts the model trains on (retrieval included). With
    ``metric_for_best_model: answer_match`` the checkpoint kept - so the training length - is chosen
    by correctness, not by the loss alone."""

    def __init__(self, tokenizer, conversations: list, batch_size: int = 8):
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.questions = [c.get("question", c["messages"][-2]["content"]) for c in conversations]
        self.references = [c["messages"][-1]["content"] for c in conversations]
        self.prompts = {q: render_prompt(tokenizer, c["messages"][:-1]) for q, c in zip(self.questions, conversations)}

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16) and not torch.cuda.is_available()):
            result = answer_match(model, self.tokenizer, self.questions, self.references, self.prompts.__getitem__, self.batch_size)
        metrics["eval_answer_match"] = result["accuracy"]
        print(f"answer matching on {result['n']} held-out records: {result['accuracy']:.3f} (chance {result['chance']})", flush=True)


def answer_match_callbacks(args: MedicalDataArguments, tokenizer, data: dict, seed: int) -> list:
    """The :class:`AnswerMatchCallback` for ``--answer_match_samples`` (none when 0)."""
    if not args.answer_match_samples or not data["loss"]:
        return []
    return [AnswerMatchCallback(tokenizer, seeded_subset(data["loss"], args.answer_match_samples, seed))]
