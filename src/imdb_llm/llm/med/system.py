"""The medical assistant as a user meets it: a model, its prompt (template, retrieved records), its
generation defaults and the safety rules (:class:`~imdb_llm.llm.med.guard.MedicalGuard`). Evaluation
builds this object, chat and serving build the same guard, so what is measured is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from imdb_llm.llm.med.guard import MedicalGuard
from imdb_llm.llm.prompts import render_prompt
from imdb_llm.llm.generation import GenerationDefaults


@dataclass
class MedicalAssistant:
    """``model`` + ``tokenizer`` decoded with ``settings``, grounded and guarded by ``guard``."""

    model: object
    tokenizer: object
    settings: GenerationDefaults = field(default_factory=GenerationDefaults)
    guard: MedicalGuard = field(default_factory=lambda: MedicalGuard(rules=False))

    @property
    def retrieves(self) -> bool:
        return self.guard.retrieves

    def messages(self, question: str, history: Sequence[dict] = ()) -> list[dict]:
        return [*history, {"role": "user", "content": self.guard.ground(question)}]

    def prompt(self, question: str) -> str:
        return render_prompt(self.tokenizer, self.messages(question))

    def plain_prompt(self, question: str) -> str:
        """The prompt without the retrieved records: what context-contrastive scoring contrasts with."""
        return render_prompt(self.tokenizer, [{"role": "user", "content": question}])

    def finish(self, question: str, answer: str) -> str:
        """What the user sees of a generated answer (the safety rules, when on)."""
        return self.guard.finish(question, answer)

    def answers(self, questions: Sequence[str], batch_size: int = 16, raw: bool = False) -> list[str]:
        """Answers to single questions, batched; ``raw`` skips the safety rules."""
        from imdb_llm.llm.sft.generate import generate_answers

        convs = [{"messages": [*self.messages(q), {"role": "assistant", "content": ""}]} for q in questions]
        out = generate_answers(self.model, self.tokenizer, convs, self.settings, batch_size, progress=False)
        return out if raw else [self.finish(q, a) for q, a in zip(questions, out)]

