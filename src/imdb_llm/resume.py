"""Resuming a run cut short: which checkpoint to continue from, and a training clock that survives it.

Kept apart from ``imdb_llm.training`` because it needs transformers at import time, and light
scripts (the ensemble, the report) import ``training`` without wanting transformers loaded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from .cli import UserError


def resolve_resume(training_args) -> str | None:
    """``--resume_from_checkpoint auto`` (or true) = the newest checkpoint in output_dir, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False"):
        return None
    if value in ("auto", "true", "True"):
        return get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
    if not os.path.isdir(value):
        raise UserError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    return value


class TrainClock(TrainerCallback):
    """Saves the training time so far in every checkpoint and reads it back on resume, so a run
    interrupted and resumed reports its whole training time, not only the last part."""

    FILE = "train_clock.json"

    def __init__(self, resume: str | None):
        path = Path(resume, self.FILE) if resume else None
        self.before = json.loads(path.read_text())["train_seconds"] if path and path.is_file() else 0.0
        self.start = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir, f"checkpoint-{state.global_step}")
        if folder.is_dir() and state.is_world_process_zero:
            (folder / self.FILE).write_text(json.dumps({"train_seconds": self.before + time.perf_counter() - self.start}))
