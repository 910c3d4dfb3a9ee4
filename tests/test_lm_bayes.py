"""The generative classifier: one LM per class, and Bayes' rule (scripts/train_lm_bayes.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imdb_llm.imdb.ensemble import load_members
from imdb_llm.imdb.models.lstm_lm import BiLSTMLanguageModel
from imdb_llm.probs import read_probs
from tiny_models import make_tiny_lstm_lm

REPO = Path(__file__).resolve().parents[1]


def test_sequence_log_likelihoods_sum_each_directions_token_log_probs_whatever_the_batch():
    lm = make_tiny_lstm_lm()
    sequences = [[3, 7, 1, 9, 4], [5, 2], [8, 8, 6, 1, 2, 3, 4, 11, 30]]
    together = lm.sequence_log_likelihoods(sequences)
    assert together.shape == (3, 2) and together.dtype == torch.float64
    for row, seq in enumerate(sequences):
        x = torch.tensor([seq])
        with torch.no_grad():  # independent path: the full log-softmax over the vocabulary, one sequence, no padding
            emb = lm.embeddings(x)
            logp_fwd = lm.softmax.log_prob(lm.forward_lstms[0](emb)[0][0])  # (T, vocab): state t -> token t+1
            logp_bwd = lm.softmax.log_prob(lm.backward_lstms[0](emb.flip(1))[0][0])  # state t of the reversed text -> token before it
        rank = lm.frequency_rank
        forward = sum(logp_fwd[t, rank[seq[t + 1]]] for t in range(len(seq) - 1))
        backward = sum(logp_bwd[t, rank[seq[::-1][t + 1]]] for t in range(len(seq) - 1))
        assert together[row].tolist() == pytest.approx([float(forward), float(backward)], abs=1e-4), row
    # padding never leaks: alone or in a batch with a longer sequence, the same score
    assert torch.allclose(lm.sequence_log_likelihoods([sequences[1]]), together[1:2], atol=1e-6)
    with pytest.raises(ValueError, match="at least two tokens"):
        lm.sequence_log_likelihoods([[4]])


def _run(args, timeout=600):
    return subprocess.run(["make", *args, f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_make_imdb_lm_bayes_scores_with_two_class_lms_and_resumes(imdb_tokenizer, imdb_dir, tmp_path):
    """On the fixture with a 4-step LM: both class LMs train, the scores are the ensemble's kind of
    member file, and the same command again reuses the finished LMs instead of retraining."""
    lm_dir, out, results = tmp_path / "lm", tmp_path / "bayes", tmp_path / "results"
    pretrain = (f"--tokenizer_name {imdb_tokenizer} --results_dir {results} --output_dir {lm_dir} --word2vec_cache none --embedding_dim 16 "
                f"--hidden_size 16 --block_size 32 --per_device_train_batch_size 8 --max_steps 4 --eval_steps 100 --save_steps 100")
    proc = _run(["imdb-lstm-lm", f"IMDB_DIR={imdb_dir}", f"ARGS={pretrain}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    bayes = f"--init_from_lm {lm_dir} --output_dir {out} --results_dir {results} --block_size 32 --per_device_train_batch_size 8 --max_steps 3 --logging_steps 1"
    proc = _run(["imdb-lm-bayes", f"IMDB_DIR={imdb_dir}", f"ARGS={bayes}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in ("neg", "pos"):
        assert (out / name / "model.safetensors").is_file()
        # fine-tuning moved the class LM away from the shared start
        start, tuned = BiLSTMLanguageModel.from_pretrained(lm_dir), BiLSTMLanguageModel.from_pretrained(out / name)
        assert not torch.equal(start.forward_lstms[0].weight_hh_l0, tuned.forward_lstms[0].weight_hh_l0)
    result = json.loads((results / "imdb-lm-bayes.json").read_text())
    metrics = result["metrics"]
    assert metrics["n_test"] == 120 and metrics["n_validation"] > 0 and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["neg_lm_tokens"] == metrics["pos_lm_tokens"] == 3 * 8 * 32  # 3 steps of 8 blocks of 32 tokens each
    splits, meta = read_probs(results / "imdb-lm-bayes.probs.parquet")
    test = splits["test"]
    assert len(test["id"]) == 120 and meta["name"] == "imdb-lm-bayes"
    assert ((test["logit"] > 0) == test["label"]).mean() == pytest.approx(metrics["test_accuracy"])
    assert load_members(["imdb-lm-bayes"], str(results))[0].name == "imdb-lm-bayes"  # a valid ensemble member

    again = _run(["imdb-lm-bayes", f"IMDB_DIR={imdb_dir}", f"ARGS={bayes}"])
    assert again.returncode == 0 and "neg LM: finished before, loaded from" in again.stdout, again.stderr[-2000:]
    assert np.array_equal(read_probs(results / "imdb-lm-bayes.probs.parquet")[0]["test"]["logit"], test["logit"])
    changed = _run(["imdb-lm-bayes", f"IMDB_DIR={imdb_dir}", f"ARGS={bayes} --learning_rate 0.5"])
    assert changed.returncode == 2 and f"error: {out / 'neg'} holds a neg LM trained with other settings (learning_rate 0.001 -> 0.5); give another --output_dir" in changed.stderr


def test_missing_lm_is_one_line_error(imdb_dir, tmp_path):
    proc = subprocess.run([sys.executable, "scripts/train_lm_bayes.py", "configs/imdb_lm_bayes.yaml", "--init_from_lm", str(tmp_path / "none"),
                           "--dataset_dir", str(imdb_dir), "--output_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == f"error: --init_from_lm {tmp_path / 'none'}: not a folder (run make imdb-lstm-lm first)"
    assert not (tmp_path / "r").exists()
