"""The from-scratch track under ``accelerate launch`` with 2 processes (DDP over gloo on CPU),
using the shared multi-GPU launch config."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_two_process_accelerate_launch_runs_both_stages(imdb_dir, imdb_tokenizer, tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate), "launch",
        "--config_file", str(REPO / "configs" / "accelerate" / "multi_gpu.yaml"),
        "--num_processes", "2",
        "--main_process_port", "29531",
        str(REPO / "scripts" / "run_scratch.py"), str(REPO / "configs" / "scratch_gpt_tiny.yaml"),
        "--use_cpu", "true",
        "--dataset_dir", str(imdb_dir),
        "--tokenizer_name", str(imdb_tokenizer),
        "--output_dir", str(tmp_path / "run"),
        "--results_name", "scratch-ddp",
        "--results_dir", str(tmp_path / "results"),
        "--max_test_samples", "32",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RUN_COMMAND": "accelerate launch (test)"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    result = json.loads((tmp_path / "results" / "scratch-ddp.json").read_text())
    m = result["metrics"]
    # Two processes: each optimizer step consumed 2 x 8 blocks of 64 tokens.
    assert m["pretrain_tokens"] == 10 * 2 * 8 * 64
    # Test predictions are gathered from both processes, each review counted once.
    assert m["n_test"] == 32
    assert len((tmp_path / "run" / "classify" / "test_predictions.jsonl").read_text().splitlines()) == 32
    # A classification loss is a mean over reviews: about ln 2 here, not doubled by the process count.
    assert 0.3 < m["test_loss"] < 1.0 and 0.0 <= m["test_accuracy"] <= 1.0
    assert result["command"] == "accelerate launch (test)"
