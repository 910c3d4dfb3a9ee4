#!/usr/bin/env python
"""Ensemble finished runs from their saved probabilities: weights fit on validation, test scored once.

    python scripts/ensemble.py --runs imdb-nbsvm imdb-textcnn --results_name imdb-ensemble-nopretrain
    make imdb-ensemble RUNS="imdb-nbsvm imdb-textcnn imdb-lstm"

Every classifier run writes ``results/<run>.probs.parquet`` (validation + test scores keyed by
review id, see imdb_llm.probs). This script lines them up by id, refuses runs whose validation
splits differ, fits a logistic regression on the members' validation log-odds (its coefficients
are the member weights), and scores test once. It trains nothing else and needs no model files.
With ``--refits member=refit ...`` test is scored by each member's refit (the same recipe retrained
on all of train) under the weights fit on the held-out member (docs/nbsvm.md, "Refit for test").
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.ensemble import align, fit_stacker, load_members, parse_refits, refit_test_logits, repeated_cv_accuracy, select_members
from imdb_llm.probs import write_result_and_probs
from imdb_llm.imdb.training import classification_metrics
from imdb_llm.results import ResultArguments, capture_log


@dataclass
class EnsembleArguments:
    runs: list[str] = field(default_factory=list, metadata={"help": "Result names whose results/<run>.probs.parquet are the members."})
    C: float = field(default=1.0, metadata={"help": "Inverse L2 strength of the stacking logistic regression."})
    cv_folds: int = field(default=5, metadata={"help": "Folds for the cross-validated validation accuracy (reported, not used to fit; averaged over 10 fold shuffles)."})
    select_members: bool = field(default=False, metadata={"help": "Keep the subset of --runs with the best cross-validated validation "
                                                                   "accuracy (every subset is scored; the table goes into the result)."})
    refits: list[str] = field(default_factory=list, metadata={"help": "member=refit pairs: test is scored with <refit>, the member's recipe retrained on "
                                                              "all of train (validation_ratio 0); the weights still come from the member's validation "
                                                              "scores (scikit-learn StackingClassifier's recipe). Every kept member needs one; "
                                                              "member=member keeps a member that is not refit (it scores test itself)."})

    def __post_init__(self):
        if not self.runs:
            raise UserError("--runs: give the member run names, e.g. --runs imdb-nbsvm imdb-textcnn")
        if self.C <= 0:
            raise UserError(f"--C must be positive, got {self.C}")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (EnsembleArguments, ResultArguments)


def uses_pretrained_weights(name: str, results_dir: str) -> bool:
    """True when the member's result file shows a fine-tuned checkpoint (a model_name_or_path it started from)."""
    path = Path(results_dir) / f"{name}.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    except (OSError, ValueError):
        return False  # provenance unknown; the probabilities file was still checked
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    return bool(config.get("model_name_or_path") or model.get("model_name_or_path"))


def accuracy_alone(data, names: list[str]) -> list[dict]:
    """Each member alone, thresholding its own log-odds at 0 (its validation and test scores)."""
    return [{"name": n, **{f"{split}_accuracy": float(((data.logits[split][:, j] > 0) == data.labels[split]).mean()) for split in ("validation", "test")}}
            for j, n in enumerate(names)]


@run_main
def main(argv=None):
    args, result_args, config = parse_args(argument_types(), argv)
    name = result_args.results_name
    if name and "nopretrain" in name:
        pretrained = [r for r in args.runs if uses_pretrained_weights(r, result_args.results_dir)]
        if pretrained:
            raise UserError(f"--results_name {name} promises no pretrained weights, but {', '.join(pretrained)} started from a checkpoint")
    # Read and check everything before anything is written.
    members = load_members(args.runs, result_args.results_dir)
    data = align(members)
    refits = parse_refits(args.refits)
    if name and "nopretrain" in name and any(uses_pretrained_weights(r, result_args.results_dir) for r in refits.values()):
        raise UserError(f"--results_name {name} promises no pretrained weights, but a refit started from a checkpoint")
    with capture_log(None) as log:
        start = time.perf_counter()
        y_val, y_test = data.labels["validation"], data.labels["test"]
        subsets = None
        if args.select_members:
            # Each candidate alone, by its own scores (reported, not used: selection reads validation only).
            alone = accuracy_alone(data, data.names)
            # Which members to keep is decided on validation alone, before test is looked at.
            keep, subsets = select_members(data.logits["validation"], y_val, data.names, args.C, args.cv_folds)
            for row in sorted(subsets, key=lambda r: -r["validation_accuracy_cv"])[:5]:
                print(f"  cross-validated {row['validation_accuracy_cv']:.4f}: {' + '.join(row['members'])}")
            dropped = [m.name for j, m in enumerate(members) if j not in keep]
            members = [members[j] for j in keep]
            data = data.subset(keep)
            print(f"members kept on validation: {', '.join(data.names)}" + (f" (dropped: {', '.join(dropped)})" if dropped else ""))
        print(f"{len(members)} member(s), {len(y_val)} validation / {len(y_test)} test reviews, lined up by id")
        heldout_test = None
        if refits:
            missing = [m.name for m in members if m.name not in refits]
            if missing:
                raise UserError(f"--refits: no refit for {', '.join(missing)} (every member that scores test must be refit, or none)")
            heldout_test = data.logits["test"]
            data.logits["test"] = np.stack([refit_test_logits(m, refits[m.name], result_args.results_dir) for m in members], axis=1)
        per_member = accuracy_alone(data, [m.name for m in members])
        for j, row in enumerate(per_member):
            refit = refits.get(row["name"])
            note = ""
            if refit:
                row.update(refit=refit, heldout_test_accuracy=float(((heldout_test[:, j] > 0) == y_test).mean()))
                note = " (not refit: scores test itself)" if refit == row["name"] else f" (refit {refit}; held-out model {row['heldout_test_accuracy']:.4f})"
            print(f"  {row['name']}: validation {row['validation_accuracy']:.4f}, test {row['test_accuracy']:.4f}{note}")

        # Weights from validation only; cross-validation on validation tells how well they transfer.
        stacker = fit_stacker(data.logits["validation"], y_val, args.C)
        folds = min(args.cv_folds, int(np.bincount(y_val, minlength=2).min()))
        # The same estimate the subset table shows (10 fold shuffles averaged), not a second one.
        cv_acc = round(repeated_cv_accuracy(data.logits["validation"], y_val, args.C, folds), 5) if folds >= 2 else None
        weights = {m.name: float(w) for m, w in zip(members, stacker.coef_[0])}
        for member in per_member:
            member["weight"] = weights[member["name"]]
        val_scores = stacker.decision_function(data.logits["validation"])
        print("weights: " + ", ".join(f"{k} {v:+.3f}" for k, v in weights.items()) + f"; intercept {stacker.intercept_[0]:+.3f}")
        print(f"validation accuracy {float(((val_scores > 0) == y_val).mean()):.4f} (fit on it); {folds}-fold cross-validated {cv_acc}")

        # The one test evaluation.
        test_scores = stacker.decision_function(data.logits["test"])
        metrics = {f"test_{k}": v for k, v in classification_metrics((test_scores > 0).astype(int), y_test).items()}
        metrics.update({
            "n_test": int(len(y_test)), "n_validation": int(len(y_val)),
            "validation_accuracy_cv": cv_acc, "validation_accuracy_in_sample": float(((val_scores > 0) == y_val).mean()),
            "members": per_member, "intercept": float(stacker.intercept_[0]),
            "best_member_test_accuracy": max(m["test_accuracy"] for m in per_member),
        })
        if subsets is not None:
            metrics.update({"candidates": args.runs, "candidates_alone": alone, "subsets": subsets})
        if refits:  # what refitting added: the same weights on the held-out members' test scores
            metrics["test_accuracy_heldout_members"] = float(((stacker.decision_function(heldout_test) > 0) == y_test).mean())
            print(f"with the members that never saw validation instead of the refits: test {metrics['test_accuracy_heldout_members']:.4f}")
        seconds = time.perf_counter() - start
        print(f"test accuracy {metrics['test_accuracy']:.4f} on {len(y_test)} reviews (best member {metrics['best_member_test_accuracy']:.4f})")
    if name:
        provenance = {**members[0].provenance, "name": name, "members": data.names, "validation_in_sample": True, "refits": refits}
        splits = {"validation": (data.ids["validation"], y_val, val_scores), "test": (data.ids["test"], y_test, test_scores)}
        config = {**config, "ensemble": asdict(args), "member_splits": {m.name: m.provenance for m in members}}
        path, _ = write_result_and_probs(name, result_args.results_dir, splits, provenance, metrics, config=config, train_seconds=seconds,
                                         log_text=log.getvalue(), extra={"members": data.names, "weights": weights})
        print(f"result written to {path}")


if __name__ == "__main__":
    main()
