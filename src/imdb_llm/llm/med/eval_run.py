"""Measure a medical assistant without a judge model (issue 48): answer matching (its reference
against three near-miss answers, by likelihood per character), its judged answers' ROUGE/BLEU and loop
rate, the disease/drug/test names it invents, and the safety sets' pass rates with and without the
safety rules; the untuned base model's answer matching beside it.

The system is what chat and serving build (:class:`imdb_llm.llm.med.system.MedicalAssistant`): the
model, its generation defaults, the retrieval index saved beside it (``retrieval_index.jsonl``, from
``sft_qlora.py --retrieval_k``) and the rules. ``--on carved`` measures on the records carved out of
train (the same carve as sft_qlora.py), for choosing recipes; ``--on judged`` (default) on
validation_file, for the final number.

``scripts/med_eval.py`` parses the arguments and calls :func:`run_med_eval`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from imdb_llm.cli import UserError
from imdb_llm.llm.generation import GenerationOverrides
from imdb_llm.llm.med.entities import InventionCounter
from imdb_llm.llm.med.evaluate import answer_match_floor, copy_nearest_measures, judged_measures, reference_measures, safety_measures
from imdb_llm.llm.med.guard import MedicalGuard
from imdb_llm.llm.med.prepare import MedicalDataArguments, clean_loaded
from imdb_llm.llm.med.retrieval import KnowledgeIndex, RetrievalArguments, qa_pairs
from imdb_llm.llm.med.rules import without_notices
from imdb_llm.llm.med.safety import load_safety_set
from imdb_llm.llm.med.system import MedicalAssistant
from imdb_llm.llm.prompts import apply_template_override
from imdb_llm.llm.sft.data import carve, load_conversations, seeded_subset
from imdb_llm.results import ResultArguments, atomic_write_text, capture_log, write_result
from imdb_llm.threads import set_torch_threads


@dataclass
class MedEvalArguments:
    """Which system to measure, on which records."""

    model_name_or_path: str = field(default="packaged:smollm2", metadata={"help": "The system's model: a tuned folder, or a base model."})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder on top of model_name_or_path (it holds the index)."})
    base_model: str | None = field(default=None, metadata={"help": "The untuned base, for base_answer_match (no retrieval, no rules); none = skip."})
    chat_template: str | None = field(default=None, metadata={"help": "A named template (gemma, chatml, chatglm2) for a tokenizer without one."})
    train_file: str = field(default="data/bentsao_med_zh/train.jsonl", metadata={"help": "The records the index and the lexicon come from."})
    validation_file: str = field(default="data/bentsao_med_zh/validation.jsonl", metadata={"help": "The judged records."})
    on: str = field(default="judged", metadata={"help": "judged (validation_file) or carved (held out of train, for recipe choices)."})
    carve_validation: float = field(default=400, metadata={"help": "The carve of sft_qlora.py (records or share), seeded by subset_seed."})
    subset_seed: int = field(default=42, metadata={"help": "Seed of the carve and of the subset."})
    max_samples: int | None = field(default=None, metadata={"help": "Measure a seeded subset of the records (None = all)."})
    retrieval_k: int | None = field(default=None, metadata={"help": "Records retrieved per question; None = the model folder's setting (0 without an index)."})
    retrieval_answer_chars: int = field(default=160, metadata={"help": "Retrieved answer length, when --retrieval_k is given."})
    retrieval_name_weight: int | None = field(default=None, metadata={"help": "Whole entity names in BM25 (see RetrievalArguments); "
                                                                             "None = the model folder's setting."})
    rules: bool = field(default=True, metadata={"help": "Pass answers through the safety rules (imdb_llm.llm.med.rules); false = raw answers."})
    safety_files: str = field(default="safety=data/med_safety/safety_set.jsonl,holdout=data/med_safety/holdout.jsonl",
                              metadata={"help": "name=path pairs of safety sets; each gives <name>_pass."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per forward pass or generate() call."})
    dtype: str = field(default="bfloat16", metadata={"help": "Weights dtype on a CPU."})
    training_summary: str | None = field(default=None, metadata={"help": "sft_results.json of the training run (n_train, train_seconds, losses); "
                                                                   "a comma list for a model trained in stages, last stage first: train_seconds adds up."})
    retrieval_k_grid: str | None = field(default=None, metadata={"help": "Comma list of retrieval depths (e.g. 0,2,3,5): answer matching "
                                                                          "only, at each depth, one model load; the best depth wins (recipe choice)."})
    guidance_scale: float = field(default=1.0, metadata={"help": "Answer matching in --retrieval_k_grid under context-contrastive scoring: "
                                                                 "log_softmax(g * (lp with records - lp without) + lp without); 1 = the plain likelihood."})
    predictions_file: str | None = field(default=None, metadata={"help": "path.jsonl:column - score answers already written (a result's "
                                                                         "predictions) with the measures that need no model; no model is loaded."})

    def __post_init__(self):
        if self.base_model is not None and self.base_model.strip().lower() in ("", "none"):
            self.base_model = None  # the make target names one; --base_model none skips it
        if self.on not in ("judged", "carved"):
            raise UserError("--on must be judged or carved")


def load_records(args: MedEvalArguments):
    """``(training records the index may hold, measured records)``, cleaned as the training run cleaned them."""
    med = MedicalDataArguments(clean_records=True)
    train, train_report = load_conversations(args.train_file, "train")
    train = clean_loaded(train, train_report, med)
    train, carved = carve(train, args.carve_validation, args.subset_seed)
    if args.on == "carved":
        measured = carved
    else:
        measured, report = load_conversations(args.validation_file, "validation")
        measured = clean_loaded(measured, report, med)
    return train, seeded_subset(measured, args.max_samples, args.subset_seed)


def build_assistant(args: MedEvalArguments, overrides: GenerationOverrides, train) -> MedicalAssistant:
    """The system as chat and serving build it; on carved records the index is rebuilt from the carve's
    train side, so a measured record is never in it."""
    from imdb_llm.llm.loading import load_causal_lm, load_chat_tokenizer

    folder = args.adapter or args.model_name_or_path
    guard = MedicalGuard.from_folder(folder, args.retrieval_k, args.rules) or MedicalGuard(rules=False)
    if args.retrieval_k and guard.index is None:  # no saved index: retrieval as the flags say
        guard.retrieval = RetrievalArguments(args.retrieval_k, args.retrieval_answer_chars)
    if args.retrieval_name_weight is not None:
        guard.retrieval = dataclasses.replace(guard.retrieval, retrieval_name_weight=args.retrieval_name_weight)
    weight = guard.retrieval.retrieval_name_weight
    if guard.retrieval.retrieval_k and (guard.index is None or args.on == "carved" or guard.index.name_weight != weight):
        guard.index = KnowledgeIndex(qa_pairs(train), weight)
    tokenizer = apply_template_override(load_chat_tokenizer(args.model_name_or_path, args.adapter), args.chat_template)
    model = load_causal_lm(args.model_name_or_path, adapter=args.adapter, dtype=args.dtype).eval()
    settings = overrides.resolve(args.model_name_or_path, args.adapter)
    k = guard.retrieval.retrieval_k if guard.retrieves else 0
    print(f"system: {folder}, retrieval top {k}, rules {'on' if guard.rules else 'off'}, decoding {settings.to_dict()} ({settings.source})")
    return MedicalAssistant(model, tokenizer, settings, guard)


def safety_sets(spec: str) -> dict:
    pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise UserError(f"--safety_files {spec!r}: give name=path pairs separated by commas")
    return {name.strip(): load_safety_set(path.strip()) for name, path in pairs}


def training_summary(paths: str | None) -> dict:
    """The last stage's summary, with ``train_seconds`` summed over every stage listed."""
    files = [Path(p.strip()) for p in (paths or "").split(",") if p.strip()]
    if missing := [str(f) for f in files if not f.is_file()]:
        raise UserError(f"--training_summary: no such file: {', '.join(missing)}")
    stages = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if not stages:
        return {}
    seconds = [s.get("train_seconds") for s in stages]
    return {**stages[0], "train_seconds": sum(seconds) if None not in seconds else None, "train_seconds_by_stage": seconds}


def score_predictions(args: MedEvalArguments, result_args, config, train, log) -> dict:
    """Invented names, loop rate and ROUGE of answers in a predictions file (question, reference, <column>)."""
    from imdb_llm.llm.sft.metrics import generation_metrics

    path, _, column = args.predictions_file.rpartition(":")
    if not path or not Path(path).is_file():
        raise UserError(f"--predictions_file {args.predictions_file}: give path.jsonl:column of an existing file")
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows or any(column not in r or "question" not in r or "reference" not in r for r in rows):
        raise UserError(f"{path}: every row needs question, reference and {column!r}")
    questions, references, answers = [r["question"] for r in rows], [r["reference"] for r in rows], [r[column] for r in rows]
    counter = InventionCounter([q + "\n" + a for q, a in qa_pairs(train)])
    invented = counter.rate(questions, [without_notices(a) for a in answers])
    metrics = {"n_judged": len(rows), "measured_on": f"{path} ({column})",
               **{f"tuned_{k}": v for k, v in generation_metrics(answers, references).items()},
               "tuned_invented_entity_rate": invented["invented_entity_rate"], "tuned_answers_with_invented_entity": invented["answers_with_invented_entity"],
               "tuned_top_invented": invented["top_invented"],
               **{f"reference_{k}": v for k, v in reference_measures(questions, references, counter).items()},
               **answer_match_floor(KnowledgeIndex(qa_pairs(train)), questions, references, args.retrieval_k or 2)}
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=1, ensure_ascii=False))
    if result_args.results_name:
        write_result(result_args.results_name, metrics, headline="medical", config=config, log_text=log.getvalue(), results_dir=result_args.results_dir)
    return metrics


def retrieval_depth_search(args: MedEvalArguments, result_args, config, assistant, train, questions, references, log) -> dict:
    """Answer matching at every depth of ``--retrieval_k_grid`` with one model: is retrieval worth keeping,
    and how deep? Chosen on the records measured (``--on carved`` for a recipe choice)."""
    from imdb_llm.llm.med.answer_match import answer_match

    depths = [int(k) for k in args.retrieval_k_grid.split(",") if k.strip()]
    if not depths or min(depths) < 0:
        raise UserError(f"--retrieval_k_grid {args.retrieval_k_grid!r}: give depths >= 0, comma-separated")
    weight = assistant.guard.retrieval.retrieval_name_weight
    index, metrics = assistant.guard.index or KnowledgeIndex(qa_pairs(train), weight), {"n_validation": len(questions), "metric": "answer_match"}
    for k in depths:
        assistant.guard.index, assistant.guard.retrieval = index, dataclasses.replace(assistant.guard.retrieval, retrieval_k=k)
        result = answer_match(assistant.model, assistant.tokenizer, questions, references, assistant.prompt, batch_size=max(4, args.batch_size // 2),
                              render_plain=assistant.plain_prompt if k and args.guidance_scale != 1.0 else None, guidance=args.guidance_scale)
        metrics[f"answer_match_k{k}"] = result["accuracy"]
        print(f"retrieval top {k}: answer matching {result['accuracy']:.3f} on {result['n']} records", flush=True)
    best = max(depths, key=lambda k: (metrics[f"answer_match_k{k}"], -k))  # a tie goes to the shallower prompt
    metrics.update({"best_variant": f"retrieval_k={best}", "n_variants": len(depths), "answer_match": metrics[f"answer_match_k{best}"]})
    if result_args.results_name:
        write_result(result_args.results_name, metrics, headline="validation_search", config=config, log_text=log.getvalue(),
                     results_dir=result_args.results_dir)
    return metrics


def base_answer_match(args: MedEvalArguments, questions, references) -> float:
    """The untuned base's answer matching, with no retrieval: where the recipe started."""
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer
    from imdb_llm.llm.med.answer_match import answer_match

    tokenizer = apply_template_override(load_tokenizer(args.base_model), args.chat_template)
    base = MedicalAssistant(load_causal_lm(args.base_model, dtype=args.dtype).eval(), tokenizer)
    return answer_match(base.model, tokenizer, questions, references, base.prompt, batch_size=max(4, args.batch_size // 2))["accuracy"]


def write_predictions(result_args, measured, answers) -> None:
    """The judged answers, written as soon as they exist: a person can start reading them (make med-rate)
    while the safety sets and the base model are still being measured."""
    if not result_args.results_name:
        return
    rows = [{"line": c["line"], "question": c["messages"][-2]["content"], "reference": c["messages"][-1]["content"], "tuned": a}
            for c, a in zip(measured, answers)]
    atomic_write_text(Path(result_args.results_dir) / f"{result_args.results_name}.predictions.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_outputs(args, result_args, config, metrics, details, summary, log) -> None:
    if not result_args.results_name:
        return
    out = Path(result_args.results_dir)
    safety_rows = [{"set": name, **row} for name, items in details.items() for row in items]
    atomic_write_text(out / f"{result_args.results_name}.safety.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in safety_rows))
    write_result(result_args.results_name, metrics, headline="medical", config=config, train_seconds=summary.get("train_seconds"),
                 log_text=log.getvalue(), results_dir=out)


def run_med_eval(args: MedEvalArguments, overrides: GenerationOverrides, result_args: ResultArguments, config: dict) -> dict:
    """One measurement: a predictions file scored, a retrieval-depth search, or the whole system on every measure."""
    with capture_log(None) as log:
        print(f"torch threads: {set_torch_threads()}")
        sets = safety_sets(args.safety_files)  # a broken file fails before any model loads
        train, measured = load_records(args)
        if args.predictions_file:
            return score_predictions(args, result_args, config, train, log)
        questions, references = [c["messages"][-2]["content"] for c in measured], [c["messages"][-1]["content"] for c in measured]
        counter = InventionCounter([q + "\n" + a for q, a in qa_pairs(train)])
        assistant = build_assistant(args, overrides, train)
        if args.retrieval_k_grid:
            return retrieval_depth_search(args, result_args, config, assistant, train, questions, references, log)
        metrics = {"n_judged": len(measured), "measured_on": args.on, "retrieval_k": assistant.guard.retrieval.retrieval_k if assistant.retrieves else 0}
        tuned, answers = judged_measures(assistant, questions, references, counter, args.batch_size,
                                         on_answers=lambda answers: write_predictions(result_args, measured, answers))
        safety, details = safety_measures(assistant, sets, args.batch_size)
        metrics.update({f"tuned_{k}": v for k, v in {**tuned, **safety}.items()})
        metrics.update({f"reference_{k}": v for k, v in reference_measures(questions, references, counter).items()})
        if assistant.retrieves:  # what copying the nearest record would have given
            copied = copy_nearest_measures(assistant.guard.index, questions, references, counter, sets)
            metrics.update({f"copy_nearest_{k}": v for k, v in copied.items()})
            metrics.update(answer_match_floor(assistant.guard.index, questions, references, assistant.guard.retrieval.retrieval_k))
        if args.base_model:
            metrics["base_answer_match"] = base_answer_match(args, questions, references)
        summary = training_summary(args.training_summary)
        metrics.update({k: summary[k] for k in ("n_train", "eval_loss", "eval_loss_base", "chosen_step", "chosen_answer_match", "train_seconds",
                                               "train_seconds_by_stage") if k in summary})
        if "chosen_step" in summary:  # the chosen checkpoint's loss, from the history (older summaries stored the choosing metric)
            metrics["eval_loss"] = next((h["eval_loss"] for h in summary.get("eval_loss_history", []) if h["step"] == summary["chosen_step"]),
                                        metrics.get("eval_loss"))
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=1, ensure_ascii=False))
        write_outputs(args, result_args, config, metrics, details, summary, log)
    return metrics
