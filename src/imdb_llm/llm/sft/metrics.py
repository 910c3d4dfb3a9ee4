"""ROUGE-1/2/L and BLEU-4 of generated Chinese answers, as ChatGLM's own evaluation computes them:
text cut into words (jieba) or characters, ROUGE from the ``rouge-chinese`` package (F1, averaged
over samples), BLEU-4 from ``sacrebleu`` on the same tokens (corpus level). All x100.

Beside them, two measures of whether the answers are readable at all, which ROUGE does not see:
the **loop rate** (:func:`has_loop`: the share of answers in which some 4-character substring
occurs 3 or more times, every overlapping window counted) and **distinct-2** (distinct token
bigrams over all bigrams of all answers, Li et al. 2016). Both are fractions in [0, 1], and both
can be computed for the reference answers too (:func:`text_metrics`), which gives the scale.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from imdb_llm.cli import UserError

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")


def chinese_tokens(text: str, mode: str = "jieba") -> list[str]:
    """Words (jieba) or characters, whitespace dropped: the units ROUGE/BLEU count on Chinese."""
    if mode == "char":
        return [ch for ch in text if not ch.isspace()]
    if mode == "jieba":
        import jieba

        jieba.setLogLevel(60)
        return [w for w in jieba.lcut(text) if w.strip()]
    raise UserError(f"metric tokens must be 'jieba' or 'char', got {mode!r}")


def rouge_f1(hyp: list[str], ref: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one answer. rouge-chinese raises on an empty side; an empty answer
    (a model that stops at once) shares nothing with the reference and scores 0."""
    if not hyp or not ref:
        return {k: 0.0 for k in ROUGE_KEYS}
    from rouge_chinese import Rouge

    scores = Rouge().get_scores(" ".join(hyp), " ".join(ref))[0]
    return {k: scores[k]["f"] for k in ROUGE_KEYS}


LOOP_WINDOW, LOOP_TIMES = 4, 3


def repeat_count(text: str, window: int = LOOP_WINDOW) -> int:
    """How often the most repeated ``window``-character substring occurs, every overlapping window
    counted ("aaaaaa" holds "aaaa" 3 times); whitespace is dropped first, and a text shorter than
    the window scores 0. The loop measure's raw number: it ranks answers from most stuck down."""
    chars = "".join(text.split())
    counts = Counter(chars[i:i + window] for i in range(len(chars) - window + 1))
    return max(counts.values(), default=0)


def has_loop(text: str, window: int = LOOP_WINDOW, times: int = LOOP_TIMES) -> bool:
    """True when some ``window``-character substring occurs ``times`` or more times
    (:func:`repeat_count`); an empty or whitespace-only answer is loop-free."""
    return repeat_count(text, window) >= times


def loop_rate(texts: Sequence[str], window: int = LOOP_WINDOW, times: int = LOOP_TIMES) -> float:
    """The share of ``texts`` that :func:`has_loop` (0.0 for no texts)."""
    return sum(has_loop(t, window, times) for t in texts) / len(texts) if texts else 0.0


def distinct_n(token_lists: Sequence[Sequence[str]], n: int = 2) -> float:
    """Distinct ``n``-grams / all ``n``-grams over every text (0.0 when there are none)."""
    grams = [tuple(toks[i:i + n]) for toks in token_lists for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def text_metrics(texts: Sequence[str], tokens: str = "jieba") -> dict[str, float]:
    """Loop rate and distinct-2 (on ``tokens``) of some texts: answers or the references themselves."""
    return {"loop_rate": round(loop_rate(texts), 4), "distinct-2": round(distinct_n([chinese_tokens(t, tokens) for t in texts], 2), 4)}


def generation_metrics(predictions: Sequence[str], references: Sequence[str], tokens: str = "jieba") -> dict[str, float]:
    """Mean per-sample ROUGE-1/2/L F1 and corpus BLEU-4, x100, rounded to 2 decimals; plus the
    answers' loop rate and distinct-2 (fractions, 4 decimals)."""
    import sacrebleu

    if len(predictions) != len(references) or not references:
        raise ValueError("need as many predictions as references (and at least one)")
    hyps = [chinese_tokens(p, tokens) for p in predictions]
    refs = [chinese_tokens(r, tokens) for r in references]
    per_sample = [rouge_f1(h, r) for h, r in zip(hyps, refs)]
    out = {k: round(100 * sum(s[k] for s in per_sample) / len(per_sample), 2) for k in ROUGE_KEYS}
    bleu = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none")
    out["bleu-4"] = round(float(bleu.score), 2)
    out["loop_rate"] = round(loop_rate(predictions), 4)
    out["distinct-2"] = round(distinct_n(hyps, 2), 4)
    return out
