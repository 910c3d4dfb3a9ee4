"""What wraps a medical model wherever it answers - evaluation, the chat CLI, the API server and so the
web page: retrieved records before the question, the safety rules around the answer. One object,
built from the model folder, so every surface grounds and guards alike.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imdb_llm.llm.med.retrieval import KnowledgeIndex, RetrievalArguments
from imdb_llm.llm.med.rules import SafetyDecision, assess


@dataclass
class MedicalGuard:
    """Retrieval (``index``, top ``retrieval.retrieval_k``; None = off) and the safety rules (``rules``)."""

    index: KnowledgeIndex | None = None
    retrieval: RetrievalArguments = field(default_factory=RetrievalArguments)
    rules: bool = True

    @property
    def retrieves(self) -> bool:
        return self.index is not None and self.retrieval.retrieval_k > 0

    def ground(self, question: str) -> str:
        """The question as the model reads it: after the retrieved records when retrieval is on."""
        if not self.retrieves:
            return question
        return self.index.context(question, self.retrieval.retrieval_k, self.retrieval.retrieval_answer_chars)

    def ground_messages(self, messages: Sequence[dict]) -> list[dict]:
        """A copy of a chat whose last user message is grounded (earlier turns stay as they were said)."""
        out = [dict(m) for m in messages]
        last = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
        if last is not None and isinstance(out[last].get("content"), str):
            out[last]["content"] = self.ground(out[last]["content"])
        return out

    def decision(self, question: str) -> SafetyDecision:
        """What the rules do around the answer to ``question`` (nothing when the rules are off)."""
        return assess(question) if self.rules else SafetyDecision()

    def finish(self, question: str, answer: str) -> str:
        return self.decision(question).apply(answer)

    def describe(self) -> str:
        """One line for a startup banner."""
        k = self.retrieval.retrieval_k if self.retrieves else 0
        return (f"medical assistant: {k} retrieved training records before each question, safety rules {'on' if self.rules else 'off'}; "
                "not medical advice, in an emergency call 120")

    @classmethod
    def from_folder(cls, folder: str | None, retrieval_k: int | None = None, rules: bool | None = None) -> "MedicalGuard | None":
        """The guard of a model folder that holds a retrieval index (a medical assistant trained with
        retrieval), else None; ``retrieval_k`` (0 = off) and ``rules`` override what the folder implies."""
        saved = KnowledgeIndex.load(folder) if folder and Path(folder).is_dir() else None
        if saved is None and not rules:
            return None
        index, args = saved if saved else (None, RetrievalArguments())
        if retrieval_k is not None:
            args = dataclasses.replace(args, retrieval_k=retrieval_k)
        return cls(index, args, rules=True if rules is None else rules)
