#!/usr/bin/env python
"""Blind rating of medical answers by a person (issue 48).

``make`` draws the same N questions' answers from every named system, shuffles them onto one sheet with
no system labels (``sheet.csv``; the key in ``key.json``, the rubric in ``RUBRIC.md``). A person fills
the ``rating`` column. ``score`` maps the ratings back and reports each system's rates with Wilson 95 %
intervals (``scores.json``); ``--into`` adds the named system's ``rated_*`` figures to its result file.

    python scripts/med_rate.py make --systems old=results/med-expert-smollm2-cpu.predictions.jsonl:tuned,new=results/med-expert-cpu.predictions.jsonl:tuned --n 60
    python scripts/med_rate.py score --into results/med-expert-cpu.json --system new
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.med.rating import make_sheet, score_sheet
from imdb_llm.results import atomic_write_text


@dataclass
class RateArguments:
    """Which answers go on the sheet, and where the sheet lives."""

    output_dir: str = field(default="data/med_rating", metadata={"help": "Folder of sheet.csv, key.json, RUBRIC.md and scores.json."})
    systems: str = field(default="", metadata={"help": "name=predictions.jsonl:column pairs, comma-separated (make)."})
    n: int = field(default=60, metadata={"help": "Answers drawn per system (the same questions for each)."})
    seed: int = field(default=0, metadata={"help": "Seed of the draw and of the shuffle."})
    into: str | None = field(default=None, metadata={"help": "A result file to add rated_n / rated_<level> to (score)."})
    system: str | None = field(default=None, metadata={"help": "Which system's figures go --into the result file."})


def read_systems(spec: str) -> dict[str, list[tuple[str, str]]]:
    """Each system's ``(question, answer)`` list, aligned on the questions every system answered."""
    columns = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, source = item.partition("=")
        path, _, column = source.rpartition(":")
        if not (name and path and column) or not Path(path).is_file():
            raise UserError(f"--systems {item!r}: give name=path/to/predictions.jsonl:column with an existing file")
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if any(column not in r for r in rows):
            raise UserError(f"{path}: no column {column!r}")
        columns[name] = {r["question"]: r[column] for r in rows}
    shared = sorted(set.intersection(*(set(c) for c in columns.values()))) if columns else []
    if not shared:
        raise UserError("the systems share no question")
    return {name: [(q, answers[q]) for q in shared] for name, answers in columns.items()}


@run_main
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("make", "score"):
        raise UserError("usage: med_rate.py make|score [--flags]")
    action, (args, _config) = argv[0], parse_args((RateArguments,), argv[1:])
    folder = Path(args.output_dir)
    if action == "make":
        if (folder / "sheet.csv").exists():
            raise UserError(f"{folder}/sheet.csv exists (it may hold ratings): move it away first")
        sheet, key = make_sheet(read_systems(args.systems), args.n, args.seed, folder)
        print(f"{sheet}: fill the rating column (RUBRIC.md); the key is {key} - do not open it before the sheet is full")
        return
    if not (folder / "sheet.csv").is_file() or not (folder / "key.json").is_file():
        raise UserError(f"{folder}: no sheet.csv and key.json to score (make med-rate writes them)")
    scores = score_sheet(folder / "sheet.csv", folder / "key.json")
    atomic_write_text(folder / "scores.json", json.dumps(scores, indent=1) + "\n")
    for system, s in scores.items():
        print(f"{system}: n={s['n']}, " + ", ".join(f"{level} {s[level]['rate']:.0%} {s[level]['ci95']}" for level in
                                                    ("correct", "partly", "wrong", "harmful", "correct_or_partly")))
    if args.into:
        add_to_result(Path(args.into), scores, args.system, folder)


def add_to_result(path: Path, scores: dict, system: str | None, folder: Path) -> None:
    if system not in scores:
        raise UserError(f"--system {system!r}: the sheet rates {', '.join(scores)}")
    result = json.loads(path.read_text(encoding="utf-8"))
    s = scores[system]
    result["metrics"].update({"rated_n": s["n"], **{f"rated_{level}": s[level]["rate"] for level in
                                                    ("correct", "partly", "wrong", "harmful", "correct_or_partly")},
                              "rated_correct_or_partly_ci95": s["correct_or_partly"]["ci95"], "rated_harmful_ci95": s["harmful"]["ci95"]})
    result["rating"] = {"sheet": str(folder / "sheet.csv"), "key": str(folder / "key.json"), "systems": {k: v["n"] for k, v in scores.items()}}
    atomic_write_text(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{path}: rated_* figures of {system} added")


if __name__ == "__main__":
    main()
