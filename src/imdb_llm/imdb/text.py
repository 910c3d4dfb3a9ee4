"""Fitting a whole review into a fixed context: head + tail truncation.

IMDB reviews average ~300 WordPiece tokens but a tenth run past 512. Sun et al. (2019, "How to
Fine-Tune BERT for Text Classification?") found that keeping the *first 128 and the last 382*
tokens beats keeping only the head: reviews tend to state the verdict at the end. Both the
from-scratch track and the fine-tuning track encode with :func:`encode_head_tail`, so they
truncate the same way.

The special tokens a tokenizer adds (``[CLS] x [SEP]`` for BERT, ``<s> x`` for Llama, nothing for
GPT-2) are discovered once by encoding a probe text with and without them, so the helper works
for any template-style tokenizer without knowing its family.
"""

from __future__ import annotations

from typing import Sequence

_PROBE = "probe"


def head_tail(ids: Sequence[int], max_tokens: int, head_tokens: int = 128) -> list[int]:
    """Keep ``ids`` whole if it fits in ``max_tokens``, else its first ``head_tokens`` and its tail.

    >>> head_tail(list(range(10)), 6, head_tokens=2)
    [0, 1, 6, 7, 8, 9]
    """
    ids = list(ids)
    if max_tokens <= 0:
        return []
    if len(ids) <= max_tokens:
        return ids
    head = max(0, min(head_tokens, max_tokens))
    tail = max_tokens - head
    return ids[:head] + (ids[len(ids) - tail :] if tail else [])


def special_token_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (e.g. ``[CLS]`` / ``[SEP]``)."""
    with_special = tokenizer(_PROBE, add_special_tokens=True)["input_ids"]
    content = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    n = len(content)
    for start in range(len(with_special) - n + 1):
        if with_special[start : start + n] == content:
            return list(with_special[:start]), list(with_special[start + n :])
    # Not a template tokenizer (the text itself changed): fall back to no wrapping.
    return [], []


def encode_head_tail(
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    head_tokens: int = 128,
    add_eos: bool = False,
) -> dict[str, list[list[int]]]:
    """Tokenize ``texts`` into at most ``max_length`` ids each, special tokens included.

    Returns ``{"input_ids": [...], "attention_mask": [...]}`` (lists, unpadded; pad in the
    collator). ``head_tokens`` of the budget go to the start of a long text, the rest to its end;
    ``head_tokens >= max_length`` is plain head truncation. ``add_eos=True`` appends
    ``tokenizer.eos_token_id`` when the tokenizer adds no closing token itself (GPT-2-style
    tokenizers), so a last-token classifier always reads a fixed end marker.
    """
    prefix, suffix = special_token_wrapping(tokenizer)
    if add_eos and not suffix:
        if tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True but the tokenizer has no eos_token")
        suffix = [tokenizer.eos_token_id]
    budget = max_length - len(prefix) - len(suffix)
    if budget <= 0:
        raise ValueError(f"max_length={max_length} leaves no room next to {len(prefix) + len(suffix)} special tokens")
    bodies = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    input_ids = [prefix + head_tail(ids, budget, head_tokens) + suffix for ids in bodies]
    return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids]}


def group_texts(examples: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate tokenized documents and cut the stream into ``block_size`` blocks (the tail
    shorter than a block is dropped), as in transformers' run_mlm.py / run_clm.py. Every
    per-token column present (``input_ids``, ``attention_mask``, ``special_tokens_mask``) is cut
    the same way; used by the from-scratch pretraining and by in-task pretraining (ITPT)."""
    keys = [k for k in ("input_ids", "attention_mask", "special_tokens_mask") if k in examples]
    streams = {k: [t for doc in examples[k] for t in doc] for k in keys}
    total = (len(streams["input_ids"]) // block_size) * block_size
    return {k: [v[i : i + block_size] for i in range(0, total, block_size)] for k, v in streams.items()}
