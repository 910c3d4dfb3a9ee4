#!/usr/bin/env python
"""Choose a fine-tuning recipe on validation: variants of one config, the test split never read.

    python scripts/tune_classifier.py configs/finetune_minilm_cpu_tune.yaml

Each variant runs ``finetune_classifier.py <base_config> <common_args> <variant args>
--evaluate_test false`` in its own process and output folder, so one variant's memory or a crash
cannot leak into the next. A finished variant (its ``validation_summary.json`` exists) is skipped on
a rerun and one cut short resumes from its checkpoint, so the search survives interruptions like
any long run. Each finished variant is also recorded in ``results/partial/<results_name>.json``
(with the exact base config, common and variant flags it ran with): commit that file and a rerun in
a fresh checkout, where ``outputs/`` is gone, skips those variants too, so a search longer than one
sitting can be spread over several. The result lists every variant with its validation accuracy at
each evaluation (the record is removed once it is written); the chosen recipe then goes into the
base config, and only that run reads test, once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.training import VALIDATION_SUMMARY
from imdb_llm.results import ResultArguments, atomic_write_text, capture_log, code_sha, device_description, write_result

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TuneArguments:
    base_config: str = field(default="", metadata={"help": "The finetune_classifier.py config every variant starts from."})
    common_args: str = field(default="", metadata={"help": "Flags every variant adds, e.g. the training subset and epochs of the search."})
    variants: list[str] = field(default_factory=list, metadata={"help": "'name: --flag value ...' per variant (an empty flag list: the base recipe)."})
    output_root: str = field(default="outputs/tune", metadata={"help": "Each variant trains in <output_root>/<name>."})


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    variants: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, flags = spec.partition(":")
        name = name.strip()
        if not sep or not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UserError(f"variant {spec!r}: write it as 'name: --flag value ...' (name: letters, digits, '.', '_', '-')")
        if name in variants:
            raise UserError(f"variant {name!r} is listed twice")
        variants[name] = shlex.split(flags)
    if not variants:
        raise UserError("no --variants to compare")
    return variants


def variant_key(base_config: str, common: list[str], flags: list[str]) -> str:
    """What a recorded variant must match to be reused: the base config's text and every flag."""
    text = Path(base_config).read_text(encoding="utf-8")
    return hashlib.sha256(json.dumps([text, common, flags]).encode()).hexdigest()[:16]


class VariantRecord:
    """Finished variants, read from the search's result and from ``results/partial/`` (kept there until
    the search is complete; see the module docstring)."""

    def __init__(self, results_dir: str, results_name: str):
        self.path = Path(results_dir, "partial", f"{results_name}.json") if results_name else None
        self.rows: dict[str, dict] = {}
        if self.path:
            final = self.path.parent.parent / f"{results_name}.json"
            if final.is_file():
                variants = json.loads(final.read_text(encoding="utf-8"))["metrics"].get("variants", [])
                self.rows = {row["name"]: row for row in variants}
            if self.path.is_file():
                self.rows.update(json.loads(self.path.read_text(encoding="utf-8")))

    def get(self, name: str, key: str) -> dict | None:
        row = self.rows.get(name)
        return row if row and row.get("recipe_key") == key else None

    def add(self, name: str, key: str, row: dict) -> dict:
        # Each row keeps its own machine: a search spread over sittings may land on different CPUs, and
        # its tokens/s then compare machines, not recipes.
        row = self.rows[name] = {**row, "recipe_key": key, "git_sha": code_sha(), "device": device_description()}
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.rows, indent=2) + "\n")
        return row

    def remove(self) -> None:
        if self.path:
            self.path.unlink(missing_ok=True)


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (TuneArguments, ResultArguments)


@run_main
def main(argv=None):
    args, result_args, config = parse_args(argument_types(), argv)
    if not args.base_config or not Path(args.base_config).is_file():
        raise UserError(f"--base_config {args.base_config!r}: no such config file")
    variants = parse_variants(args.variants)
    common = shlex.split(args.common_args)
    if any(flag in ("--evaluate_test", "--output_dir") for flag in common + [f for v in variants.values() for f in v]):
        raise UserError("--evaluate_test and --output_dir are set by the tuner, per variant")

    rows = []
    record = VariantRecord(result_args.results_dir, result_args.results_name)
    with capture_log(None) as log:
        for name, flags in variants.items():
            out = Path(args.output_root, name)
            summary_path = out / VALIDATION_SUMMARY
            key = variant_key(args.base_config, common, flags)
            recorded = record.get(name, key)
            if recorded and not summary_path.is_file():
                print(f"[{name}] recorded before: {record.path} (commit {recorded['git_sha']})", flush=True)
            elif summary_path.is_file():
                print(f"[{name}] done before: {summary_path}", flush=True)
            else:
                command = [sys.executable, str(REPO / "scripts" / "finetune_classifier.py"), args.base_config, *common, *flags,
                           "--evaluate_test", "false", "--output_dir", str(out), "--resume_from_checkpoint", "auto"]
                print(f"[{name}] {shlex.join(command[1:])}", flush=True)
                env = {**os.environ, "RUN_COMMAND": ""}
                proc = subprocess.run(command, env=env, cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                tail = [line for line in proc.stdout.splitlines() if "accuracy" in line or "error" in line.lower()][-3:]
                print("\n".join(f"[{name}] {line}" for line in tail), flush=True)
                if proc.returncode != 0 or not summary_path.is_file():
                    raise UserError(f"variant {name} failed (exit {proc.returncode}); its log: {out / 'train.log'}")
            if not recorded or summary_path.is_file():
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
                recorded = record.add(name, key, {"name": name, "args": shlex.join(flags), **summary})
            rows.append(recorded)
            print(f"[{name}] best validation accuracy {recorded['best_validation_accuracy']:.4f}", flush=True)

        best = max(rows, key=lambda r: r["best_validation_accuracy"])
        metrics = {
            "best_variant": best["name"],
            "best_validation_accuracy": best["best_validation_accuracy"],
            "n_validation": best["n_validation"],
            "n_train": best.get("n_train"),
            "n_variants": len(rows),
            "variants": rows,
        }
        print(f"best: {best['name']} ({best['args'] or 'the base recipe'}), validation accuracy {best['best_validation_accuracy']:.4f}")
        if result_args.results_name:
            written = write_result(result_args.results_name, metrics, headline="validation_search", config=config, train_seconds=sum(r["train_seconds"] for r in rows),
                                   log_text=log.getvalue(), results_dir=result_args.results_dir)
            print(f"result written to {written}")
            record.remove()
    return metrics


if __name__ == "__main__":
    main()
