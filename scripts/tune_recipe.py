#!/usr/bin/env python
"""Choose a fine-tuning recipe on validation: variants of one config, the final held-out set never read.

    python scripts/tune_recipe.py configs/finetune_minilm_cpu_tune.yaml
    python scripts/tune_recipe.py configs/smollm2_med_expert_cpu_tune.yaml   # the same for sft_qlora.py

Each variant runs ``<script> <base_config> <common_args> <variant args> <held_out_args>`` in its own
process and output folder (finetune_classifier.py unless the config names another ``script``: any
training script that writes a summary of its validation scores to its output folder), so one
variant's memory or a crash cannot leak into the next. A finished variant (its summary exists) is skipped on
a rerun and one cut short resumes from its checkpoint, so the search survives interruptions like
any long run. Each finished variant is also recorded in ``results/partial/<results_name>.json``
(with the exact base config, common and variant flags it ran with): commit that file and a rerun in
a fresh checkout, where ``outputs/`` is gone, skips those variants too, so a search longer than one
sitting can be spread over several. The result lists every variant with its summary (the record is
removed once it is written); the variant with the best ``metric`` wins, the chosen recipe then goes
into the base config, and only that run reads test, once.
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

from imdb_llm.cli import UserError, load_config_file, parse_args, run_main
from imdb_llm.imdb.training import VALIDATION_SUMMARY
from imdb_llm.results import ResultArguments, atomic_write_text, capture_log, code_sha, device_description, write_result

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCRIPT = "scripts/finetune_classifier.py"
SEARCH_LOG = "search.log"  # in output_root: the tuner's own output, every sitting
VARIANT_LOG = "variant.log"  # in each variant's folder: everything its training script printed


@dataclass
class TuneArguments:
    base_config: str = field(default="", metadata={"help": "The config of the training script that every variant starts from."})
    common_args: str = field(default="", metadata={"help": "Flags every variant adds, e.g. the training subset and epochs of the search."})
    variants: list[str] = field(default_factory=list, metadata={"help": "'name: --flag value ...' per variant (an empty flag list: the base recipe)."})
    output_root: str = field(default="outputs/tune", metadata={"help": "Each variant trains in <output_root>/<name>."})
    script: str = field(default=DEFAULT_SCRIPT, metadata={"help": "The training script every variant runs (a path relative to the repository, or absolute)."})
    summary_file: str = field(default=VALIDATION_SUMMARY, metadata={"help": "The file in a variant's output folder that holds its validation scores."})
    metric: str = field(default="best_validation_accuracy", metadata={"help": "The key of summary_file that ranks the variants."})
    greater_is_better: bool = field(default=True, metadata={"help": "false for a loss."})
    held_out_args: str = field(default="--evaluate_test false", metadata={"help": "Flags that keep the final held-out set unread, added to every variant."})

    def __post_init__(self):
        if not self.script_path.is_file():
            raise UserError(f"--script {self.script}: no such script")

    @property
    def script_path(self) -> Path:
        return REPO / self.script  # an absolute path stays itself


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


def variant_key(base_config: str, common: list[str], flags: list[str], script: str = DEFAULT_SCRIPT) -> str:
    """What a recorded variant must match to be reused: the script, the base config's settings (resolved
    through ``base:``, so an edit to a shared base counts) and every flag (the default script is left out,
    so records made before there was a choice still match)."""
    text = json.dumps(load_config_file(base_config), sort_keys=True, default=str)
    parts = [text, common, flags] + ([script] if script != DEFAULT_SCRIPT else [])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


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
    common, held_out = shlex.split(args.common_args), shlex.split(args.held_out_args)
    reserved = {"--output_dir", "--resume_from_checkpoint", *(f for f in held_out if f.startswith("--"))}
    if reserved & set(common + [f for v in variants.values() for f in v]):
        raise UserError(f"{', '.join(sorted(reserved))} are set by the tuner, per variant")

    rows = []
    record = VariantRecord(result_args.results_dir, result_args.results_name)
    # The search's own log, appended over every sitting, so the result's log covers all of them.
    search_log = Path(args.output_root, SEARCH_LOG)
    search_log.parent.mkdir(parents=True, exist_ok=True)
    earlier = search_log.read_text(encoding="utf-8") if search_log.is_file() else ""
    with capture_log(search_log) as log:
        for name, flags in variants.items():
            out = Path(args.output_root, name)
            summary_path = out / args.summary_file
            key = variant_key(args.base_config, common, flags, args.script)
            recorded = record.get(name, key)
            if recorded and not summary_path.is_file():
                print(f"[{name}] recorded before: {record.path} (commit {recorded['git_sha']})", flush=True)
            elif summary_path.is_file():
                print(f"[{name}] done before: {summary_path}", flush=True)
            else:
                command = [sys.executable, str(args.script_path), args.base_config, *common, *flags, *held_out,
                           "--output_dir", str(out), "--resume_from_checkpoint", "auto"]
                print(f"[{name}] {shlex.join(command[1:])}", flush=True)
                env = {**os.environ, "RUN_COMMAND": ""}
                proc = subprocess.run(command, env=env, cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                out.mkdir(parents=True, exist_ok=True)
                with open(out / VARIANT_LOG, "a", encoding="utf-8") as variant_log:  # a resumed variant adds to it
                    variant_log.write(proc.stdout)
                tail = [line for line in proc.stdout.splitlines() if any(w in line.lower() for w in ("accuracy", "loss", "error"))][-3:]
                print("\n".join(f"[{name}] {line}" for line in tail), flush=True)
                if proc.returncode != 0 or not summary_path.is_file():
                    raise UserError(f"variant {name} failed (exit {proc.returncode}); its log: {out / VARIANT_LOG}")
            if not recorded or summary_path.is_file():
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
                recorded = record.add(name, key, {"name": name, "args": shlex.join(flags), **summary})
            if args.metric not in recorded:
                raise UserError(f"variant {name}: no {args.metric!r} in its {args.summary_file}")
            rows.append(recorded)
            print(f"[{name}] {args.metric} {recorded[args.metric]:.4f}", flush=True)

        sign = 1 if args.greater_is_better else -1
        best = max(rows, key=lambda r: sign * r[args.metric])
        metrics = {
            "best_variant": best["name"],
            "metric": args.metric,
            args.metric: best[args.metric],
            "n_validation": best.get("n_validation", best.get("n_eval")),
            "n_train": best.get("n_train"),
            "n_variants": len(rows),
            "variants": rows,
        }
        print(f"best: {best['name']} ({best['args'] or 'the base recipe'}), {args.metric} {best[args.metric]:.4f}")
        if result_args.results_name:
            written = write_result(result_args.results_name, metrics, headline="validation_search", config=config, train_seconds=sum(r["train_seconds"] for r in rows),
                                   log_text=earlier + log.getvalue(), results_dir=result_args.results_dir)
            print(f"result written to {written}")
            record.remove()
    return metrics


if __name__ == "__main__":
    main()
