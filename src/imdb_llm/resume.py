"""Resuming a run cut short, in one place: which checkpoint to continue from (and the check that it
was saved by a run with the same settings), the "stage finished" marker, and the training clock and
run log that survive a kill. Every training entry point uses these.

Kept apart from ``imdb_llm.imdb.training`` because it needs transformers at import time, and light
scripts (the ensemble, the report) import ``training`` without wanting transformers loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from imdb_llm.cli import UserError
from imdb_llm.results import atomic_write_text, read_json, trim_log, write_json_atomic


# What a checkpoint's run was trained with, beyond the script's own arguments. Precision, device
# count, logging and saving may change between the parts of a run; these may not.
TRAINING_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay",
                   "warmup_steps", "lr_scheduler_type", "optim", "adam_beta1", "adam_beta2", "max_grad_norm", "seed", "train_sampling_strategy")
# Script arguments that change where things are kept or what is reported, not what is trained.
BOOKKEEPING = {"model_note", "tokenized_cache_dir", "answers_cache_dir", "cache_dir", "benchmark_padding_steps"}
SETTINGS_FILE = "run_settings.json"


def without_bookkeeping(arguments) -> dict:
    """An argument dataclass as a dict, minus the fields in :data:`BOOKKEEPING`."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(arguments).items() if k not in BOOKKEEPING}


def run_settings(*argument_objects, training_args) -> dict:
    """The settings a checkpoint's training depends on: the given argument dataclasses (minus
    bookkeeping) and the optimisation fields of ``training_args``, as plain JSON values."""
    settings = {k: v for obj in argument_objects for k, v in without_bookkeeping(obj).items()}
    settings.update({k: getattr(training_args, k, None) for k in TRAINING_FIELDS})
    return json.loads(json.dumps(settings, default=str))


def changed_settings(before: dict, now: dict) -> str:
    """``"key old -> new, ..."`` for the settings that differ (the first four), ``""`` when none do."""
    changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
    return ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:4]) + (", ..." if len(changed) > 4 else "")


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """Newest ``checkpoint-N`` holding ``trainer_state.json`` (Trainer writes that file last, so a
    checkpoint cut short by a kill is skipped); None when there is none (or no folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def resolve_resume(training_args, settings: dict | None = None) -> str | None:
    """``--resume_from_checkpoint auto`` (or true) = the newest checkpoint in output_dir, if any.

    With ``settings`` (:func:`run_settings`), a checkpoint saved by a run with other settings (more
    training records, another learning rate) is refused: continuing it would mix two runs into one
    result. Checkpoints from before settings were recorded are resumed unchecked."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False"):
        return None
    if value in ("auto", "true", "True"):
        found = last_complete_checkpoint(training_args.output_dir)
    elif not os.path.isdir(value):
        raise UserError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    else:
        found = value
    saved = Path(found, SETTINGS_FILE) if found else None
    if settings is not None and saved is not None and saved.is_file():
        shown = changed_settings(json.loads(saved.read_text()), settings)
        if shown:
            raise UserError(f"{found} was saved by a run with other settings ({shown}); "
                            f"give another --output_dir, or --resume_from_checkpoint false to start over")
    return found


def check_same_run(output_dir: Path, identity: dict, overwrite: bool, is_main: bool, stages: tuple[str, ...] = ()) -> None:
    """Refuse to resume a multi-stage run made with other settings (``identity``: ``{group: {key: value}}``),
    or, with ``overwrite``, delete its ``stages`` folders and start over."""
    path = output_dir / "run_identity.json"
    old = read_json(path)
    if old is not None and old != identity:
        if not overwrite:
            changed = sorted({f"{group}.{k}" for group in identity for k in identity[group] if old.get(group, {}).get(k) != identity[group][k]})
            raise UserError(f"{output_dir} holds a run with other settings ({', '.join(changed)}); use another --output_dir or add --overwrite_output_dir true")
    if is_main:
        if old is not None and (old != identity or overwrite):
            for sub in stages:
                shutil.rmtree(output_dir / sub, ignore_errors=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, identity)


def finished_stage(folder: str | os.PathLike, marker: str) -> dict | None:
    """What a finished stage recorded in its marker file (written last), or None if it did not finish."""
    return read_json(Path(folder, marker))


def mark_stage_finished(folder: str | os.PathLike, marker: str, data: dict) -> None:
    """Write the stage's marker file: call it last, after everything the stage saves."""
    write_json_atomic(Path(folder, marker), data)


def _write_into_checkpoint(args, state, name: str, text: str) -> None:
    """Add the file ``name`` to the checkpoint the Trainer has just saved (main process only)."""
    folder = Path(args.output_dir, f"checkpoint-{state.global_step}")
    if folder.is_dir() and state.is_world_process_zero:
        atomic_write_text(folder / name, text)


class SettingsRecord(TrainerCallback):
    """Writes the run's settings into every checkpoint, for :func:`resolve_resume` to compare."""

    def __init__(self, settings: dict):
        self.settings = settings

    def on_save(self, args, state, control, **kwargs):
        _write_into_checkpoint(args, state, SETTINGS_FILE, json.dumps(self.settings, indent=1, sort_keys=True))


class TrainClock(TrainerCallback):
    """Saves the training time so far in every checkpoint and reads it back on resume, so a run
    interrupted and resumed reports its whole training time, not only the last part."""

    FILE = "train_clock.json"

    def __init__(self, resume: str | None):
        path = Path(resume, self.FILE) if resume else None
        self.before = json.loads(path.read_text())["train_seconds"] if path and path.is_file() else 0.0
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """Training time over every session: before this one, plus this one so far."""
        return self.before + time.perf_counter() - self.start

    def on_save(self, args, state, control, **kwargs):
        _write_into_checkpoint(args, state, self.FILE, json.dumps({"train_seconds": self.seconds()}))


class RunLog(TrainerCallback):
    """The run's log over every sitting, as :class:`TrainClock` is its time: the log so far is saved
    in every checkpoint and read back on resume, so the result log of a run stopped and resumed shows
    the parts before the stop, not only the last sitting. ``getvalue()`` stands in for the buffer of
    :func:`~imdb_llm.results.capture_log` wherever a result's log is written."""

    FILE = "run_log.txt"

    def __init__(self, resume: str | None, buffer):
        path = Path(resume, self.FILE) if resume else None
        self.before = path.read_text(encoding="utf-8") if path and path.is_file() else ""
        self.resumed_from = Path(resume).name if resume else None
        self.buffer = buffer

    def getvalue(self) -> str:
        if not self.before:
            return self.buffer.getvalue()
        return f"{self.before.rstrip()}\n\n[stopped; the next sitting resumed from {self.resumed_from}]\n\n{self.buffer.getvalue()}"

    def on_save(self, args, state, control, **kwargs):
        _write_into_checkpoint(args, state, self.FILE, trim_log(self.getvalue()))


def timed_train(trainer, resume_from_checkpoint=None) -> tuple[Any, float]:
    """``trainer.train(...)`` and the seconds this session spent in it (:class:`TrainClock` adds earlier sessions)."""
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return out, time.perf_counter() - start
