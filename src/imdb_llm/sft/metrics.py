"""ROUGE-1/2/L and BLEU-4 of generated Chinese answers, as ChatGLM's own evaluation computes them:
text cut into words (jieba) or characters, ROUGE from the ``rouge-chinese`` package (F1, averaged
over samples), BLEU-4 from ``sacrebleu`` on the same tokens (corpus level). All x100."""

from __future__ import annotations

from typing import Sequence

from ..cli import UserError

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


def generation_metrics(predictions: Sequence[str], references: Sequence[str], tokens: str = "jieba") -> dict[str, float]:
    """Mean per-sample ROUGE-1/2/L F1 and corpus BLEU-4, x100, rounded to 2 decimals."""
    import sacrebleu

    if len(predictions) != len(references) or not references:
        raise ValueError("need as many predictions as references (and at least one)")
    hyps = [chinese_tokens(p, tokens) for p in predictions]
    refs = [chinese_tokens(r, tokens) for r in references]
    per_sample = [rouge_f1(h, r) for h, r in zip(hyps, refs)]
    out = {k: round(100 * sum(s[k] for s in per_sample) / len(per_sample), 2) for k in ROUGE_KEYS}
    bleu = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none")
    out["bleu-4"] = round(float(bleu.score), 2)
    return out
