"""Every correctness and safety measure of one medical assistant, in one call (issue 48): answer
matching, the judged answers' ROUGE/BLEU/loop rate, invented entities, and the safety sets' pass rates
with and without the rules. No judge model anywhere: a likelihood, string matching and counting.
"""

from __future__ import annotations

from typing import Sequence

from imdb_llm.llm.med.answer_match import answer_match
from imdb_llm.llm.med.entities import InventionCounter
from imdb_llm.llm.med.safety import Scenario, safety_report
from imdb_llm.llm.med.system import MedicalAssistant
from imdb_llm.llm.sft.metrics import generation_metrics, text_metrics


def safety_measures(assistant: MedicalAssistant, sets: dict[str, Sequence[Scenario]], batch_size: int = 16) -> tuple[dict, dict]:
    """Pass rate of each safety set, with the rules (``<set>_pass``) and without (``<set>_pass_no_rules``),
    from one generation, and of the rules around an empty answer (``<set>_pass_rules_only``): how much of
    the pass the model itself earns. Returns ``(metrics, {set: [{id, question, answer, passed, ...}]})``."""
    from imdb_llm.llm.med.rules import apply_rules

    metrics, details = {}, {}
    for name, cases in sets.items():
        questions = [c.question for c in cases]
        raw = assistant.answers(questions, batch_size, raw=True)
        shown = [assistant.finish(q, a) for q, a in zip(questions, raw)]
        with_rules, without = safety_report(shown, cases), safety_report(raw, cases)
        rules_only = safety_report([apply_rules(q, "") for q in questions], cases)
        metrics.update({f"{name}_pass": with_rules["pass_rate"], f"{name}_pass_no_rules": without["pass_rate"], f"n_{name}": len(cases),
                        f"{name}_pass_rules_only": rules_only["pass_rate"],
                        f"{name}_pass_by_category": with_rules["by_category"]})
        details[name] = [{**v, "question": q, "answer": a, "raw_answer": r}
                         for v, q, a, r in zip(with_rules["verdicts"], questions, shown, raw)]
    return metrics, details


def judged_measures(assistant: MedicalAssistant, questions: Sequence[str], references: Sequence[str], counter: InventionCounter,
                    batch_size: int = 16, metric_tokens: str = "jieba", on_answers=None) -> tuple[dict, list[str]]:
    """The generated answers' text metrics and invented-entity rate, and answer matching; returns
    ``(metrics, answers)``. ``on_answers(answers)`` runs as soon as the answers exist (to save them early)."""
    answers = assistant.answers(questions, batch_size)
    if on_answers is not None:
        on_answers(answers)
    from imdb_llm.llm.med.rules import without_notices

    match = answer_match(assistant.model, assistant.tokenizer, questions, references, assistant.prompt, batch_size=max(4, batch_size // 2))
    invented = counter.rate(questions, [without_notices(a) for a in answers])
    metrics = {"answer_match": match["accuracy"], **generation_metrics(answers, references, metric_tokens),
               "invented_entity_rate": invented["invented_entity_rate"], "answers_with_invented_entity": invented["answers_with_invented_entity"],
               "top_invented": invented["top_invented"]}
    return metrics, answers


def reference_measures(questions: Sequence[str], references: Sequence[str], counter: InventionCounter, metric_tokens: str = "jieba") -> dict:
    """The references' own scale: their loop rate, distinct-2 and invented-entity rate."""
    invented = counter.rate(questions, references)
    return {**text_metrics(references, metric_tokens), "invented_entity_rate": invented["invented_entity_rate"],
            "answers_with_invented_entity": invented["answers_with_invented_entity"]}


def answer_match_floor(index, questions: Sequence[str], references: Sequence[str], k: int = 2) -> dict:
    """Answer matching by word overlap alone (:func:`~imdb_llm.llm.med.answer_match.overlap_answer_match`):
    with the question (``overlap_answer_match``) and with the question and the answers of its top-``k``
    retrieved records (``overlap_retrieved_answer_match``). A model's answer matching means something only
    above these."""
    from imdb_llm.llm.med.answer_match import overlap_answer_match

    retrieved = [q + "".join(index.records[r][1] for r in index.search(q, k)) for q in questions]
    return {"overlap_answer_match": overlap_answer_match(questions, references, questions)["accuracy"],
            "overlap_retrieved_answer_match": overlap_answer_match(questions, references, retrieved)["accuracy"]}


def copy_nearest_measures(index, questions: Sequence[str], references: Sequence[str], counter: InventionCounter,
                          sets: dict[str, Sequence[Scenario]], metric_tokens: str = "jieba") -> dict:
    """The baseline any model must beat: answer with the nearest training record's answer (BM25, as the
    assistant retrieves it), through the same safety rules. Its ROUGE, invented names and safety pass."""
    from imdb_llm.llm.med.rules import apply_rules, without_notices

    def nearest(question: str) -> str:
        rows = index.search(question, 1)
        return apply_rules(question, index.records[rows[0]][1] if rows else "")

    answers = [nearest(q) for q in questions]
    invented = counter.rate(questions, [without_notices(a) for a in answers])
    out = {k: v for k, v in generation_metrics(answers, references, metric_tokens).items() if k in ("rouge-l", "bleu-4")}
    out["invented_entity_rate"] = invented["invented_entity_rate"]
    for name, cases in sets.items():
        out[f"{name}_pass"] = safety_report([nearest(c.question) for c in cases], cases)["pass_rate"]
    return out
