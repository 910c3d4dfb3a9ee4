"""Records not fit to learn from, dropped and counted (issue 48).

The BenTsao records were written by GPT-3.5 from knowledge-graph entries, and a few of them carry the
generator's accidents: an age that was a missing value (``NaN岁``), an answer the question already
states word for word, an answer too short to say anything (``氧``), or the same pair twice. Each rule
is a reason in the report, so a user sees what went and why.
"""

from __future__ import annotations

import re
from typing import Any

MIN_ANSWER_CHARS = 4  # "化疗", "男性": a word, not an answer
_PUNCT = re.compile(r"[\s。，、；：！？,.;:!?\"'“”‘’（）()]+")


def _core(text: str) -> str:
    return _PUNCT.sub("", text)


def reject_reason(question: str, answer: str) -> str | None:
    """Why a question/answer pair should not be trained on or judged, or None when it is fine."""
    if re.search(r"\bnan\b|nan岁|nan个|nan天|nan年", question + answer, flags=re.IGNORECASE):
        return "corrupt value (NaN)"
    core = _core(answer)
    if len(core) < MIN_ANSWER_CHARS:
        return f"answer shorter than {MIN_ANSWER_CHARS} characters"
    if core in _core(question):
        return "question contains its own answer"
    return None


def clean_conversations(conversations: list[dict[str, Any]], report) -> list[dict[str, Any]]:
    """Drop unfit records and exact duplicates (same question and answer) from single-turn
    conversations, counting each reason in ``report`` (a :class:`~imdb_llm.llm.sft.data.DataReport`)."""
    kept, seen = [], set()
    for conv in conversations:
        question, answer = conv["messages"][-2]["content"], conv["messages"][-1]["content"]
        reason = reject_reason(question, answer)
        if reason is None and (question, answer) in seen:
            reason = "exact duplicate"
        if reason:
            report.skip(reason, conv["line"])
            continue
        seen.add((question, answer))
        kept.append(conv)
    report.kept = len(kept)
    return kept
