"""The shared-prompt-prefix cache of the batched engine.

Chat templates put the same system prompt in front of every request; its keys/values are computed
once, kept, and copied into later prompts that start with it, so prefill (the compute-bound part
on a CPU) only runs on what differs.
"""

from __future__ import annotations

from imdb_llm.serve.batch import PaddedBatch, SharedPrefix, common_prefix_length

MIN_SHARED_PREFIX = 16  # tokens: below this, reusing a prefix saves less than the bookkeeping costs


class PrefixCache:
    """One remembered prefix (token ids + keys/values) and the last prompt seen."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.prefix: SharedPrefix | None = None  # keys/values of self.ids
        self.ids: list[int] = []
        self.last_prompt: list[int] = []

    def reusable(self, prompts) -> SharedPrefix | None:
        """The cached prefix (or its first part) when every prompt starts with it, else None."""
        if not self.enabled or self.prefix is None:
            return None
        # Keep at least one token of each prompt to compute: its logits start the answer.
        k = min(min(common_prefix_length(self.ids, p), len(p) - 1) for p in prompts)
        if k < MIN_SHARED_PREFIX:
            return None
        if k == self.prefix.length:
            return self.prefix
        return SharedPrefix(k, [(key[:, :, :k], value[:, :, :k]) for key, value in self.prefix.layers])

    def learn(self, prompts, batch: PaddedBatch) -> None:
        """Remember the prefix these prompts (and the previous one) share, taken from the fresh cache."""
        others = prompts[1:] + ([self.last_prompt] if self.last_prompt else [])
        if self.enabled and others:
            k = min(min(common_prefix_length(prompts[0], o) for o in others), len(prompts[0]) - 1)
            if k >= MIN_SHARED_PREFIX:
                self.ids, self.prefix = list(prompts[0][:k]), batch.prefix_of(0, k)
