"""Choosing how a tuned model decodes, on held-out validation (never on the records it is judged on).

A handful of candidate settings (greedy with and without repetition control, a longer or shorter
answer, one sampled setting), each answering the same carved validation questions. A candidate may
win only if its loop rate is at most ``max_loop_rate``; among those the highest ROUGE-L wins (ties:
the lower loop rate, then the earlier candidate). When no candidate is loop-free enough, the one
that loops least wins and the result says so. The winner becomes the model's generation defaults
(``generation_defaults.json``), which the final judging, the chat CLI and the server then use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from imdb_llm.cli import UserError
from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.llm.sft.metrics import generation_metrics

SEARCH_KEYS = ("rouge-l", "loop_rate", "distinct-2", "bleu-4")


@dataclass
class DecodingSearchArguments:
    """Which decoding settings to try on the carved validation, and what makes one acceptable."""

    decoding_candidates: list[str] = field(
        default_factory=list,
        metadata={"help": "Candidate settings as key=value pairs joined by commas (e.g. repetition_penalty=1.2,no_repeat_ngram_size=8), "
                  "each on top of the judging settings; empty = no search. Needs --carve_validation."},
    )
    decoding_search_samples: int = field(default=100, metadata={"help": "Carved validation records (seeded) every candidate answers."})
    max_loop_rate: float = field(default=0.05, metadata={"help": "A candidate whose answers loop more often than this cannot win."})

    def __post_init__(self):
        if self.decoding_search_samples < 1:
            raise UserError("--decoding_search_samples must be >= 1")
        if not 0.0 <= self.max_loop_rate <= 1.0:
            raise UserError("--max_loop_rate must be in [0, 1]")

    def parsed(self, base: GenerationDefaults) -> list[GenerationDefaults]:
        """The candidates as settings (checked at once, before any training)."""
        return [GenerationDefaults.from_spec(spec, base) for spec in self.decoding_candidates]


def pick(rows: Sequence[dict], max_loop_rate: float) -> int:
    """Index of the winner among scored candidates (see the module docstring)."""
    if not rows:
        raise ValueError("no candidates to choose from")
    allowed = [i for i, r in enumerate(rows) if r["loop_rate"] <= max_loop_rate]
    if allowed:
        return min(allowed, key=lambda i: (-rows[i]["rouge-l"], rows[i]["loop_rate"], i))
    return min(range(len(rows)), key=lambda i: (rows[i]["loop_rate"], -rows[i]["rouge-l"], i))


def choose_decoding(answer: Callable[[GenerationDefaults], list[str]], candidates: Sequence[GenerationDefaults], references: Sequence[str],
                    tokens: str, max_loop_rate: float) -> tuple[GenerationDefaults, list[dict]]:
    """Score every candidate's answers (``answer(settings)``) against ``references``; return the
    winner (its source says how it was chosen) and the table of every candidate's scores."""
    rows = []
    for settings in candidates:
        scores = generation_metrics(answer(settings), references, tokens)
        rows.append({"settings": settings.to_dict(), **{k: scores[k] for k in SEARCH_KEYS}})
        print(f"decoding candidate {settings.spec()}: " + ", ".join(f"{k} {scores[k]}" for k in SEARCH_KEYS), flush=True)
    best = pick(rows, max_loop_rate)
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    within = rows[best]["loop_rate"] <= max_loop_rate
    how = (f"decoding search on {len(references)} carved validation records: best ROUGE-L with loop rate <= {max_loop_rate}" if within
           else f"decoding search on {len(references)} carved validation records: NO candidate kept the loop rate <= {max_loop_rate}; lowest loop rate")
    chosen = GenerationDefaults.from_mapping(rows[best]["settings"], source=how)
    print(f"chosen decoding: {chosen.spec()} ({how})", flush=True)
    return chosen, rows
