"""The running batch of the server: many sequences, one left-padded KV cache, one forward per step.

Why a hand-written loop instead of ``model.generate`` or transformers' own continuous batching:
``generate`` takes a fixed batch (nobody can join after it starts), and transformers' paged
``generate_batch`` path was slower than a plain padded ``generate`` batch when issue 16 tried both
on the 2-core CPU (and ``transformers serve --continuous-batching`` hung there). So this keeps the
plain padded layout and lets rows come and go between steps:

* Every row is **left padded** to the common width ``W``, so the newest token of every row sits in
  the last column and one forward of shape ``[rows, 1]`` advances them all.
* ``mask`` (``[rows, W]``, 1 = real token, 0 = padding) goes to the model as the attention mask,
  so padding is never attended to; ``position_ids`` count only real tokens, so a row's rotary
  positions are exactly what they would be if it ran alone.
* Joining (:meth:`PaddedBatch.extend`) pads the narrower side's keys/values on the left and
  concatenates along the batch dimension: rotary position is already baked into cached keys, so
  moving a row right in the cache changes nothing it computes.
* Leaving (:meth:`PaddedBatch.keep`) drops rows and then the leading columns that only the
  departed rows used, so a long request that finishes gives its memory back at once.

The cache is a transformers ``DynamicCache`` whose per-layer ``keys`` / ``values`` tensors are
edited in place; every model whose layers use plain ``DynamicLayer`` s (Llama, Glm/ChatGLM2, Qwen2,
GPT-NeoX, ...) works, with or without a PEFT adapter on top.
"""

from __future__ import annotations

from typing import Any, Sequence

from imdb_llm.llm.loading import forward_kwargs


def common_prefix_length(a, b) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class SharedPrefix:
    """Cached keys/values of a prompt prefix many requests share (a chat template's system prompt).

    Causal attention means a prefix's keys/values do not depend on what follows it, so they can be
    computed once and copied into every later prompt that starts with the same tokens.
    """

    def __init__(self, length: int, layers: list):
        self.length, self.layers = length, layers  # layers: per layer (keys, values), [1, heads, length, dim]


class PaddedBatch:
    """Rows of token sequences sharing one left-padded KV cache.

    Build one with :meth:`prefill` (runs the prompts, returns the batch and the next-token logits
    of each row), grow it with :meth:`extend`, advance it with :meth:`step`, shrink it with
    :meth:`keep`.
    """

    def __init__(self, model, cache, mask):
        self.model, self.cache, self.mask = model, cache, mask
        self._cache_kw, self._logits_to_keep = forward_kwargs(model)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def prefill(cls, model, prompts: Sequence[Sequence[int]], *, pad_id: int, device, prefix: "SharedPrefix | None" = None) -> tuple["PaddedBatch", Any]:
        """Run the prompts (left padded together) through the model: ``(batch, logits [rows, vocab])``.
        One forward; :class:`ChunkedPrefill` is the same in pieces."""
        run = ChunkedPrefill(model, prompts, pad_id=pad_id, device=device, prefix=prefix)
        return run.batch, run.advance()

    def prefix_of(self, row: int, length: int) -> "SharedPrefix":
        """The keys/values of the first ``length`` real tokens of ``row`` (to reuse for later prompts)."""
        first = int(self.mask[row].nonzero()[0])
        if not bool(self.mask[row, first : first + length].all()):
            raise ValueError("the prefix of this row is interrupted by padding")
        cols = slice(first, first + length)
        return SharedPrefix(length, [(layer.keys[row : row + 1, :, cols].clone(), layer.values[row : row + 1, :, cols].clone()) for layer in self._layers()])

    def _forward(self, ids, positions):
        kwargs = {self._cache_kw: self.cache, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1  # the LM head on the last position only: [rows, vocab], not [rows, W, vocab]
        # One row with no padding (one user, the chat CLI's and the web page's case): the causal mask
        # is all the model needs, and leaving ours out spares building a 4-D mask every token.
        alone = self.rows == 1 and bool(self.mask.all())
        out = self.model(input_ids=ids, attention_mask=None if alone else self.mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :].float()

    def _layers(self):
        layers = getattr(self.cache, "layers", None)
        if layers is None:
            raise RuntimeError("the batched engine needs transformers' layered DynamicCache (transformers >= 4.56)")
        return layers

    # -- the decode step ----------------------------------------------------------------------
    def step(self, tokens) -> Any:
        """Feed one new token per row (``tokens``: ``[rows]`` long tensor): next-token logits ``[rows, vocab]``."""
        import torch

        positions = self.mask.sum(-1, keepdim=True)  # real tokens so far = the new token's position
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        return self._forward(tokens.view(-1, 1).to(self.mask.device), positions)

    # -- rows joining and leaving -------------------------------------------------------------
    def extend(self, other: "PaddedBatch") -> None:
        """Append ``other``'s rows (left padding whichever side is narrower to the common width)."""
        import torch
        import torch.nn.functional as F

        width = max(self.width, other.width)

        def pad_left(t, dim_from_end: int, by: int):
            # F.pad takes (left, right) pairs starting from the LAST dimension.
            return t if by == 0 else F.pad(t, [0, 0] * (dim_from_end - 1) + [by, 0])

        a, b = width - self.width, width - other.width
        for mine, theirs in zip(self._layers(), other._layers()):
            # keys/values are [rows, kv_heads, W, head_dim]: the sequence dim is 2nd from the end.
            mine.keys = torch.cat([pad_left(mine.keys, 2, a), pad_left(theirs.keys, 2, b)], dim=0)
            mine.values = torch.cat([pad_left(mine.values, 2, a), pad_left(theirs.values, 2, b)], dim=0)
        self.mask = torch.cat([pad_left(self.mask, 1, a), pad_left(other.mask, 1, b)], dim=0)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in this order), then drop leading columns that are padding in all of them."""
        import torch

        if len(rows) == self.rows and list(rows) == list(range(self.rows)):
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.width
        self.mask = self.mask[:, first:]
        for layer in self._layers():
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]


class ChunkedPrefill:
    """Prompts prefilled in column chunks of at most ``chunk`` tokens (0 = all at once), so the engine
    can run a decode step of the rows already running between two chunks (vLLM's and llama-server's
    chunked prefill): one long prompt then delays every stream by one chunk, not by its whole prefill.

    With ``prefix`` (keys/values of the first ``prefix.length`` tokens, which every prompt starts
    with) only the rest of each prompt is computed. A row is laid out as ``[prefix][padding][rest]``:
    padding in the middle is fine, the mask hides it wherever it is. Causal attention makes the
    chunks exact: a chunk's tokens see the cache of every earlier column and nothing later.
    """

    def __init__(self, model, prompts: Sequence[Sequence[int]], *, pad_id: int, device, prefix: "SharedPrefix | None" = None, chunk: int = 0):
        import torch
        from transformers import DynamicCache

        k = prefix.length if prefix is not None else 0
        rests = [list(p)[k:] for p in prompts]
        width = max(len(r) for r in rests)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), k + width), dtype=torch.long)
        mask[:, :k] = 1
        for r, rest in enumerate(rests):
            ids[r, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            mask[r, k + width - len(rest) :] = 1
        self.ids, self.mask = ids.to(device), mask.to(device)
        # Positions count real tokens only; padding gets a harmless position (it is masked anyway).
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, k:]
        if prefix is None:
            cache = DynamicCache()
        else:  # every row starts from the same cached keys/values: a view, copied on the first append
            rows = len(prompts)
            cache = DynamicCache(ddp_cache_data=[(key.expand(rows, -1, -1, -1), value.expand(rows, -1, -1, -1)) for key, value in prefix.layers])
        self.batch = PaddedBatch(model, cache, self.mask[:, :k])
        self.prefix_length, self.chunk, self.done = k, chunk or width, 0

    @property
    def width(self) -> int:
        return self.ids.shape[1]

    @property
    def finished(self) -> bool:
        return self.done == self.width

    def advance(self) -> Any:
        """Run the next chunk; after the last one, the next-token logits ``[rows, vocab]``, else None."""
        end = min(self.done + self.chunk, self.width)
        self.batch.mask = self.mask[:, : self.prefix_length + end]
        logits = self.batch._forward(self.ids[:, self.done : end], self.positions[:, self.done : end])
        self.done = end
        return logits if self.finished else None
