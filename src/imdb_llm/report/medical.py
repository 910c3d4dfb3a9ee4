"""The medical assistants side by side on every measure of issue 48 (``{{medical:NAME,NAME,...}}``),
read from their result files: one column per system, one row per measure, a dash where a system was
not measured that way."""

from __future__ import annotations

from typing import Any

from imdb_llm.report.numbers import _number, fmt_seconds

# One row per measure: label | metric key | format ("pct": a 0-1 share shown in %, "count", "num").
_ROWS = """
records trained on | n_train | count
judged records | n_judged | count
answer matching, base model (no retrieval; chance 25 %) | base_answer_match | pct
answer matching, the system | tuned_answer_match | pct
answer matching by word overlap with the question, no model | overlap_answer_match | pct
answer matching by word overlap with the question and retrieved answers, no model | overlap_retrieved_answer_match | pct
safety set pass (rules on) | tuned_safety_pass | pct
safety set pass (model alone) | tuned_safety_pass_no_rules | pct
safety set pass (rules around an empty answer) | tuned_safety_pass_rules_only | pct
hold-out safety pass (rules on) | tuned_holdout_pass | pct
hold-out safety pass (model alone) | tuned_holdout_pass_no_rules | pct
hold-out safety pass (rules around an empty answer) | tuned_holdout_pass_rules_only | pct
invented disease/drug/test names | tuned_invented_entity_rate | pct
invented names in the references (the scale) | reference_invented_entity_rate | pct
loop rate | tuned_loop_rate | pct
ROUGE-L | tuned_rouge-l | num
BLEU-4 | tuned_bleu-4 | num
baseline, copy the nearest training record: ROUGE-L | copy_nearest_rouge-l | num
baseline, copy the nearest training record: invented names | copy_nearest_invented_entity_rate | pct
baseline, copy the nearest training record: safety set pass (rules on) | copy_nearest_safety_pass | pct
blind rating: correct or partly right | rated_correct_or_partly | pct
blind rating: harmful | rated_harmful | pct
answers rated | rated_n | count
"""
MEDICAL_ROWS = tuple(tuple(part.strip() for part in line.split(" | ")) for line in _ROWS.strip().splitlines())


def _cell(value: Any, kind: str) -> str:
    number = _number(value)
    if number is None:
        return "—"
    if kind == "pct":
        return f"{100 * number:.1f} %"
    if kind == "count":
        return f"{int(number):,}"
    return f"{number:.2f}"


def medical_table(results: dict[str, dict[str, Any]], names: list[str]) -> str:
    """A Markdown table: the systems named (their result files) against every measure."""
    header = "| measure | " + " | ".join(f"[`{n}`](../results/{n}.json)" for n in names) + " |"
    lines = [header, "|---|" + "---:|" * len(names)]
    for label, key, kind in MEDICAL_ROWS:
        cells = [_cell(results[n]["metrics"].get(key), kind) if n in results else "—" for n in names]
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seconds = [_number(results[n].get("train_seconds")) if n in results else None for n in names]
    lines.append("| training time | " + " | ".join("—" if s is None else fmt_seconds(s) for s in seconds) + " |")
    missing = [n for n in names if n not in results]
    if missing:
        lines.append("")
        lines.append("Not yet measured: " + ", ".join(f"`results/{n}.json`" for n in missing) + ".")
    return "\n".join(lines)
