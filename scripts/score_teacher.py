#!/usr/bin/env python
"""Score IMDB train and unlabelled reviews with a teacher, for the self-built BERT/GPT to distil.

    python scripts/score_teacher.py [--ensemble results/imdb-ensemble-nopretrain.json] [--output PATH]

The teacher is a saved ensemble (scripts/ensemble.py): its members' refits (trained on IMDB train
only, no external weights or text) each score the reviews, and the ensemble's weights, fit on
validation, combine their log-odds. The refits were fit on all of train, validation included, and a
student learns that function: its validation score then reads high (results/imdb-teacher-leak.json).
``--members as_fit`` scores with the members as they were before their refits (fit on train minus
validation), so a student's validation stays honest, for a slightly weaker teacher. Test reviews are
never scored here; the teacher's test accuracy is computed from the scoring runs' saved test scores,
to be named in the student's result.

Each refit model is checked to be the one its result describes: it rescores a few of the test
reviews its probabilities file holds (no labels read) and must give the same log-odds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.imdb.distill import distillation_sets, write_teacher
from imdb_llm.imdb.ensemble import sorted_by_id
from imdb_llm.probs import probs_path, read_probs
from imdb_llm.threads import set_torch_threads

CHECK_REVIEWS = 64  # test reviews rescored per member to check the loaded model is the one that was measured
CHECK_TOLERANCE = 0.1  # log-odds; bf16 autocast in different batches moves the last bits
MEMBER_CHOICES = ("refits", "as_fit")


@dataclass
class TeacherArguments:
    ensemble: str = field(default="results/imdb-ensemble-nopretrain.json",
                          metadata={"help": "An ensemble result whose members all have refits (make imdb-ensemble); its weights combine them."})
    output: str = field(default="results/imdb-ensemble-nopretrain.teacher.parquet", metadata={"help": "The teacher file to write (committed beside its ensemble: soft targets on train + unlabelled reviews, no test review)."})
    batch_size: int = field(default=128, metadata={"help": "Reviews per forward pass for the neural members."})
    with_unlabelled: bool = field(default=True, metadata={"help": "Score the 50,000 unlabelled reviews too (the student learns from them)."})
    members: str = field(default="refits", metadata={"help": "refits: the members refit on all of train (validation included); "
                                                              "as_fit: the members as validation chose them, never fit on a validation review."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise UserError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.members not in MEMBER_CHOICES:
            raise UserError(f"--members must be one of {', '.join(MEMBER_CHOICES)}, got {self.members!r}")


def argument_types():
    return (TeacherArguments, ImdbArguments)


def read_ensemble(path: str, members: str = "refits") -> dict:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: no ensemble result (run make imdb-ensemble first)")
    result = json.loads(file.read_text(encoding="utf-8"))
    listed = result.get("metrics", {}).get("members") or []
    if not listed:
        raise UserError(f"{file}: no members listed")
    if members == "refits" and any(not m.get("refit") for m in listed):
        raise UserError(f"{file}: every member needs a refit (trained on all of train) to be a teacher; rerun make imdb-ensemble with REFITS, "
                        "or score with --members as_fit")
    return result


def scoring_run(member: dict, members: str) -> str:
    """The run whose saved model scores for ``member``: its refit, or the member run itself."""
    return member["refit"] if members == "refits" else member["name"]


def member_config(run: str, results_dir: Path) -> dict:
    file = results_dir / f"{run}.json"
    if not file.is_file():
        raise UserError(f"{file}: no result for {run} (run make {run})")
    return json.loads(file.read_text(encoding="utf-8"))["config"]


def load_scorer(config: dict, batch_size: int):
    """``texts -> log-odds`` for one saved member: an NBSVM pipeline or a TextCNN/BiLSTM model."""
    if "nbsvm" in config:
        import joblib

        path = Path(config["nbsvm"]["output_dir"], "model.joblib")
        if not path.is_file():
            raise UserError(f"{path}: missing NBSVM model (rerun its make target)")
        try:
            pipeline = joblib.load(path)
        except (ModuleNotFoundError, AttributeError) as exc:  # a pickle names the classes' modules, which may have moved
            raise UserError(f"{path}: saved by an older layout of this code ({exc}); refit it with its make target "
                            f"(the command in its results/*.json)") from None
        return lambda texts: np.asarray(pipeline.decision_function(list(texts)), dtype=np.float64)
    return _neural_scorer(config, batch_size)


def _neural_scorer(config: dict, batch_size: int):
    import torch
    from transformers import AutoModelForSequenceClassification

    import imdb_llm.imdb.models  # noqa: F401  (registers textcnn / bilstm with the Auto classes)
    from imdb_llm.precision import resolve_precision
    from imdb_llm.probs import logits_to_log_odds
    from imdb_llm.imdb.tokenization import load_tokenizer

    folder = Path(config["output_dir"])
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: missing model (rerun its make target)")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(config["model"]["tokenizer_name"])
    max_length = config["model"]["max_length"]
    bf16 = resolve_precision(config["model"].get("mixed_precision") or "no") == "bf16"  # as the member was evaluated

    def score(texts):
        texts = list(texts)
        ids = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths per batch: little padding
        out = np.empty(len(texts))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                logits = model(**batch).logits.float().numpy()
                out[rows] = logits_to_log_odds(logits)
        return out

    return score


def check_reproduces(name: str, score, dsets, results_dir: Path) -> None:
    """The loaded model must give the log-odds its probabilities file recorded on test."""
    splits, _ = read_probs(probs_path(name, results_dir))
    test = sorted_by_id(splits["test"])
    ids = test["id"][:CHECK_REVIEWS]
    texts = dsets["test"].select(ids.tolist())["text"]  # load_imdb keeps test in id order
    gap = float(np.max(np.abs(score(texts) - test["logit"][:CHECK_REVIEWS])))
    if gap > CHECK_TOLERANCE:
        raise UserError(f"{name}: the saved model does not reproduce its recorded test scores (max log-odds gap {gap:.3f}); rerun make {name}")
    print(f"  {name}: reproduces its recorded scores on {len(ids)} test reviews (max gap {gap:.4f})")


def teacher_test_accuracy(ensemble: dict, results_dir: Path, members: str = "refits") -> float:
    """The combined teacher's test accuracy, from the scoring runs' saved test scores."""
    total, labels = None, None
    for member in ensemble["metrics"]["members"]:
        test = sorted_by_id(read_probs(probs_path(scoring_run(member, members), results_dir))[0]["test"])
        total = member["weight"] * test["logit"].astype(np.float64) + (0 if total is None else total)
        labels = test["label"]
    return float((((total + ensemble["metrics"]["intercept"]) > 0).astype(int) == labels).mean())


@run_main
def main(argv=None):
    args, data_args, _config = parse_args(argument_types(), argv)
    ensemble = read_ensemble(args.ensemble, args.members)
    results_dir = Path(args.ensemble).parent
    members = ensemble["metrics"]["members"]
    print(f"torch threads: {set_torch_threads()}")
    dsets = load_imdb(data_args, with_unsupervised=args.with_unlabelled)
    reviews = distillation_sets(dsets, with_unlabelled=args.with_unlabelled)
    print("reviews to score: " + ", ".join(f"{split} {len(ds)}" for split, ds in reviews.items()))

    start = time.perf_counter()
    combined = {split: np.full(len(ds), float(ensemble["metrics"]["intercept"])) for split, ds in reviews.items()}
    for member in members:
        run = scoring_run(member, args.members)
        score = load_scorer(member_config(run, results_dir), args.batch_size)
        check_reproduces(run, score, dsets, results_dir)
        for split, ds in reviews.items():
            t0 = time.perf_counter()
            combined[split] += member["weight"] * score(ds["text"])
            print(f"  {run} x {member['weight']:.3f}: {split} scored in {time.perf_counter() - t0:.0f}s")
    seconds = time.perf_counter() - start

    meta = {
        # The name says which: a student's result names its teacher.
        "teacher": ensemble["name"] if args.members == "refits" else f"{ensemble['name']} (members as fit, no validation review)",
        "teacher_test_accuracy": teacher_test_accuracy(ensemble, results_dir, args.members),
        "members": [{"name": m["name"], "refit": m["refit"], "scored_by": scoring_run(m, args.members), "weight": m["weight"]} for m in members],
        "intercept": ensemble["metrics"]["intercept"],
        "scoring_seconds": round(seconds, 2),
        "n": {split: len(ds) for split, ds in reviews.items()},
        "data": {k: v for k, v in dataclasses.asdict(data_args).items() if k != "tokenized_cache_dir"},
    }
    agree = float(((combined["train"] > 0).astype(int) == np.asarray(reviews["train"]["label"])).mean())
    path = write_teacher(args.output, {split: (reviews[split]["id"], combined[split]) for split in reviews}, meta)
    print(f"teacher {meta['teacher']} (test accuracy {meta['teacher_test_accuracy']:.4f}) scored {meta['n']} in {seconds:.0f}s; "
          f"agrees with {agree:.2%} of train labels; written to {path}")


if __name__ == "__main__":
    main()
