"""Encoding a conversation with the tokenizer's own chat template (:mod:`imdb_llm.llm.prompts`):
answer-only labels, and the length budget."""

from __future__ import annotations

import math
from typing import Any, Sequence

from imdb_llm.cli import UserError
from imdb_llm.llm.prompts import render_prompt
from imdb_llm.llm.sft.data import DataReport

IGNORE_INDEX = -100


def encode_conversation(tokenizer, messages: Sequence[dict[str, str]]) -> dict[str, list[int]]:
    """Token ids and labels for one conversation; only the final answer (and EOS) is learned.

    Earlier turns are context, as in ChatGLM2's own fine-tuning code. The prompt is rendered by
    the chat template (which already contains any BOS / ``[gMASK]`` prefix it wants), so the
    tokenizer must not add special tokens a second time.
    """
    prompt_ids = tokenizer(render_prompt(tokenizer, messages[:-1]), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def choose_max_length(lengths: Sequence[int], percentile: float = 99.0, multiple: int = 8, cap: int | None = None) -> int:
    """The ``percentile`` of ``lengths`` rounded up to ``multiple`` (and at most ``cap``)."""
    import numpy as np

    value = int(math.ceil(float(np.percentile(np.asarray(lengths), percentile)) / multiple) * multiple)
    return min(value, cap) if cap else value


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(lengths)
    return {"n": int(arr.size), "mean": round(float(arr.mean()), 1), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)), "max": int(arr.max())}


def encode_dataset(tokenizer, conversations: list[dict[str, Any]], report: DataReport, max_length: int) -> list[dict[str, list[int]]]:
    """Encode and drop (reporting) samples longer than ``max_length`` tokens."""
    out = []
    for conv in conversations:
        enc = conv.get("_enc") or encode_conversation(tokenizer, conv["messages"])
        if len(enc["input_ids"]) > max_length:
            report.skip(f"longer than max_length={max_length} tokens", conv["line"])
            continue
        out.append(enc)
    report.kept = len(out)
    if not out:
        raise UserError(f"{report.source}: every sample is longer than max_length={max_length}")
    return out
