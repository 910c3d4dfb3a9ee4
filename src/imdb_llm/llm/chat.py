"""Multi-turn chat with any causal LM whose tokenizer has a chat template (the chat CLI's engine)."""

from __future__ import annotations

from typing import Any

from imdb_llm.cli import UserError
from imdb_llm.llm.loading import context_length_of
from imdb_llm.llm.prompts import prompt_ids, require_chat_template


class ChatSession:
    """Multi-turn chat with any model whose tokenizer has a chat template.

    The history is rendered by the model's own template every turn (for a converted ChatGLM2 that
    is ``[Round N]\\n\\n问：…\\n\\n答：…``), and the oldest rounds are dropped when the prompt plus
    ``max_new_tokens`` would not fit in the context window. ``settings`` (the model's
    :class:`~imdb_llm.llm.generation.GenerationDefaults`, flags applied) say how to decode, as in the
    evaluation and the server; without them, ``max_new_tokens`` and ``generate_kwargs`` do. A
    ``guard`` (:class:`~imdb_llm.llm.med.guard.MedicalGuard`) grounds each question in retrieved
    records and passes each answer through the safety rules, as in the evaluation.
    """

    def __init__(self, model, tokenizer, *, system: str | None = None, max_new_tokens: int = 512,
                 max_context_tokens: int | None = None, settings=None, guard=None, **generate_kwargs: Any):
        require_chat_template(tokenizer, "use a chat model (or a ChatGLM2 folder from convert_chatglm2.py)")
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.settings = settings
        self.guard = guard  # a medical assistant's MedicalGuard: retrieved records before the question, safety rules after
        self.max_new_tokens = settings.max_new_tokens if settings is not None else max_new_tokens
        self.context = max_context_tokens or self._model_context()
        if self.context <= self.max_new_tokens:
            raise UserError(f"context of {self.context} tokens leaves no room for a prompt with max_new_tokens={self.max_new_tokens}")
        self.generate_kwargs = generate_kwargs
        self.history: list[dict[str, str]] = []
        self.dropped_rounds = 0

    def _model_context(self) -> int:
        """The model's context, capped by the tokenizer's ``model_max_length`` when it sets one."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        context = context_length_of(self.model, self.tokenizer)
        return min(context, int(limit)) if limit and limit < 10**9 else context

    def clear(self) -> None:
        self.history = []

    def messages(self, query: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        said = self.guard.ground(query) if self.guard is not None else query  # the history keeps what was typed
        return system + self.history + [{"role": "user", "content": said}]

    def encode(self, query: str) -> list[int]:
        """Prompt ids for ``query`` after the history, dropping the oldest rounds that do not fit."""
        budget = self.context - self.max_new_tokens
        while True:
            ids = prompt_ids(self.tokenizer, self.messages(query))
            if len(ids) <= budget or not self.history:
                break
            self.history = self.history[2:]  # one round = the oldest user message and its answer
            self.dropped_rounds += 1
        if len(ids) > budget:
            raise UserError(f"message too long: {len(ids)} prompt tokens, at most {budget} fit (context {self.context} - max_new_tokens {self.max_new_tokens})")
        return ids

    def reply(self, query: str, streamer=None) -> str:
        import torch

        ids = self.encode(query)
        input_ids = torch.tensor([ids], device=self.model.device)
        kwargs = {"max_new_tokens": self.max_new_tokens, **self.generate_kwargs}
        if self.settings is not None:
            kwargs.update(self.settings.generate_kwargs(prompt_width=len(ids)))
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                                      pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        answer = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        if self.guard is not None:
            answer = self.guard.finish(query, answer)
        self.history += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
        return answer
