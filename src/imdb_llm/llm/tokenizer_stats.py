"""How many tokens a tokenizer spends on a text, and how much of a long text fits a token budget.

Two questions the written half asks of real tokenizers, answered on this project's data:

* Chinese: tokens per character on the medical records. A tokenizer whose vocabulary has few Chinese
  pieces falls back to bytes (a CJK character is three UTF-8 bytes), so it spends more tokens, which
  costs context, training time and decoding speed. A *fragment* is a token that is not a whole
  character on its own: decoded alone it is an incomplete UTF-8 sequence (byte-level BPE's byte
  pieces, SentencePiece's ``<0xE4>`` byte-fallback pieces).
* English: how much of an IMDB review a model sees at a fixed budget of tokens, for WordPiece against
  byte-level BPE (bert-vs-gpt.md §4).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from imdb_llm.llm.sft.metrics import chinese_tokens


def _characters(texts: Sequence[str]) -> int:
    """Characters without whitespace: the same units as the project's character-level ROUGE."""
    return sum(len(chinese_tokens(text, "char")) for text in texts)


def _count_tokens(tokenizer, texts: Sequence[str], batch: int = 256) -> list[list[int]]:
    ids: list[list[int]] = []
    for start in range(0, len(texts), batch):
        ids.extend(tokenizer(list(texts[start:start + batch]), add_special_tokens=False)["input_ids"])
    return ids


def fragment_ids(tokenizer, ids: Iterable[int]) -> set[int]:
    """The ids among ``ids`` that decode, alone, to an incomplete character (U+FFFD appears)."""
    return {i for i in set(ids) if "\ufffd" in tokenizer.decode([i])}


def chinese_stats(tokenizer, texts: Sequence[str]) -> dict[str, Any]:
    """Tokens per character (whitespace excluded from the characters) and the share of fragment tokens."""
    ids = _count_tokens(tokenizer, texts)
    flat = [i for row in ids for i in row]
    if not flat:
        raise ValueError("no tokens: the texts are empty")
    fragments = fragment_ids(tokenizer, flat)
    characters = _characters(texts)
    return {
        "tokens": len(flat),
        "characters": characters,
        "tokens_per_character": round(len(flat) / characters, 4),
        "fragment_token_share": round(sum(i in fragments for i in flat) / len(flat), 4),
        "vocab_size": len(tokenizer),
    }


def jieba_stats(texts: Sequence[str]) -> dict[str, Any]:
    """Words per character when jieba segments the texts as this project's Chinese ROUGE does (``chinese_tokens``)."""
    words = sum(len(chinese_tokens(text, "jieba")) for text in texts)
    characters = _characters(texts)
    return {"words": words, "characters": characters, "words_per_character": round(words / characters, 4)}


def budget_stats(tokenizer, texts: Sequence[str], budget: int) -> dict[str, Any]:
    """Tokens per review and how much of a review the first ``budget`` tokens cover.

    ``seen_character_share`` is the mean, over reviews, of the share of a review's characters that fall
    inside its first ``budget`` tokens (from the tokenizer's offsets): 1.0 for a review that fits.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    lengths, seen = [], []
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        lengths.append(len(ids))
        if len(ids) <= budget:
            seen.append(1.0)
        else:
            seen.append(offsets[budget - 1][1] / max(len(text), 1))
    n = len(lengths)
    ordered = sorted(lengths)
    return {
        "reviews": n,
        "mean_tokens": round(sum(lengths) / n, 1),
        "median_tokens": ordered[n // 2],
        f"over_{budget}_share": round(sum(length > budget for length in lengths) / n, 4),
        f"seen_character_share_at_{budget}": round(sum(seen) / n, 4),
        "tokens_per_word": round(sum(lengths) / sum(len(text.split()) for text in texts), 4),
    }
