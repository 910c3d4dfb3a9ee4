"""The per-evaluation progress line: rate, ETA and finish time from a fake clock."""

import datetime as dt
from types import SimpleNamespace

from imdb_llm.progress import ProgressLine


def test_eta_from_steps_done_since_this_process_started(capsys):
    ticks = iter([100.0, 100.0 + 600.0, 100.0 + 1500.0])
    cb = ProgressLine(clock=lambda: next(ticks), now=lambda: dt.datetime(2026, 12, 1, 14, 0))
    state = SimpleNamespace(global_step=200, max_steps=1200)  # resumed at step 200
    cb.on_train_begin(None, state, None)
    state.global_step = 500
    cb.on_evaluate(None, state, None, metrics={"eval_accuracy": 0.9088, "eval_loss": 0.22})
    out = capsys.readouterr().out.strip()
    # 300 steps in 600 s = 0.5 steps/s; 700 steps left = 1400 s = 23.3 min -> about 14:23
    assert out == "progress: step 500/1200 (41.7 %), 10.0 min elapsed, 0.50 steps/s, ETA 23.3 min (about 14:23), eval_accuracy 0.9088"


def test_runs_without_evaluation_print_at_most_every_few_minutes(capsys):
    now = [0.0]
    cb = ProgressLine(every_seconds=300, clock=lambda: now[0], now=lambda: dt.datetime(2026, 12, 1, 14, 0))
    state, args = SimpleNamespace(global_step=0, max_steps=100), SimpleNamespace(eval_strategy="no")
    cb.on_train_begin(args, state, None)
    for step, t in ((10, 100.0), (20, 200.0), (40, 400.0), (50, 500.0)):
        state.global_step, now[0] = step, t
        cb.on_log(args, state, None, logs={})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("progress: step 40/100 (40.0 %)") and "ETA 10.0 min" in lines[0]
