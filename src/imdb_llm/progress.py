"""A line a person can read on a long CPU run: where it is, how fast it goes, when it will end.

The Trainer's progress bar redraws itself and is trimmed out of saved logs; this callback prints one
plain line at every evaluation (and, for runs that never evaluate, at most every few minutes of
logging), e.g. ``progress: step 704/2112 (33.3 %), 21.9 min elapsed, 0.54 steps/s, ETA 43.6 min
(about 15:02), eval_accuracy 0.9088``. The rate is wall-clock time over steps since this process
started training (evaluation time included), so the ETA counts future evaluations too.
"""

from __future__ import annotations

import datetime as dt
import time

from transformers import TrainerCallback


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


class ProgressLine(TrainerCallback):
    def __init__(self, every_seconds: float = 300.0, clock=time.monotonic, now=dt.datetime.now):
        self.every_seconds, self.clock, self.now = every_seconds, clock, now
        self.start = self.first_step = self.last_print = None

    def line(self, state, metrics: dict | None = None) -> str | None:
        if self.start is None or not state.max_steps:
            return None
        elapsed, done = self.clock() - self.start, state.global_step - self.first_step
        text = f"progress: step {state.global_step}/{state.max_steps} ({100 * state.global_step / state.max_steps:.1f} %), {_minutes(elapsed)} elapsed"
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            left = (state.max_steps - state.global_step) / rate
            finish = (self.now() + dt.timedelta(seconds=left)).strftime("%H:%M")
            text += f", {rate:.2f} steps/s, ETA {_minutes(left)} (about {finish})"
        for key in ("eval_accuracy", "eval_loss"):
            if metrics and key in metrics:
                text += f", {key} {metrics[key]:.4f}"
                break
        return text

    def _print(self, state, metrics=None):
        text = self.line(state, metrics)
        if text:
            print(text, flush=True)
            self.last_print = self.clock()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last_print = self.clock()
        self.first_step = state.global_step  # a resumed run starts counting where it resumed

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._print(state, metrics)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if args.eval_strategy == "no" and self.last_print is not None and self.clock() - self.last_print >= self.every_seconds:
            self._print(state)
