"""Tokenizer, TextCNN / BiLSTM models and their make targets, on the small IMDB fixture."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from imdb_llm.cli import UserError, config_to_argv, parse_args
from imdb_llm.imdb.embeddings import load_vectors_file
from imdb_llm.imdb.models import BiLSTMConfig, BiLSTMForSequenceClassification, TextCNNConfig, TextCNNForSequenceClassification
import imdb_llm.imdb.models  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TINY = ["--embedding_dim", "16", "--num_filters", "8", "--hidden_size", "8", "--num_layers", "1", "--max_length", "64",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--dataloader_num_workers", "0",
        "--word2vec_epochs", "1", "--logging_steps", "2", "--max_train_samples", "64"]



def test_tokenizer_round_trip(imdb_tokenizer):
    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    text = "this movie was great, and the acting was not bad at all!"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.pad_token == "[PAD]" and tok.mask_token == "[MASK]"
    assert tok.unk_token_id not in tok("the movie")["input_ids"]


@pytest.mark.parametrize("cls, config", [
    (TextCNNForSequenceClassification, TextCNNConfig(vocab_size=50, embedding_dim=8, kernel_sizes=[2, 3], num_filters=4, pooling="max_mean")),
    (BiLSTMForSequenceClassification, BiLSTMConfig(vocab_size=50, embedding_dim=8, hidden_size=6, num_layers=2, pooling="max_mean")),
])
def test_models_ignore_padding_and_round_trip_through_auto(cls, config, tmp_path):
    torch.manual_seed(0)
    model = cls(config).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    padded = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0, 0]])
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        b = model(input_ids=padded, attention_mask=(padded != 0).long()).logits
        short = model(input_ids=torch.tensor([[5]]), labels=torch.tensor([1]))  # shorter than kernels
    assert torch.allclose(a, b, atol=1e-5), "padding changed the prediction"
    assert short.loss is not None and torch.isfinite(short.loss)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == config.model_type
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_bilstm_equals_a_packed_bidirectional_lstm_with_the_same_weights():
    """The per-direction LSTMs with within-length reversal compute what pack_padded_sequence would."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=40, embedding_dim=5, hidden_size=4, num_layers=2, pooling="max")
    model = BiLSTMForSequenceClassification(config).eval()
    reference = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(model.forward_lstms[layer], f"{name}_l0").copy_(getattr(reference, f"{name}_l{layer}"))
                getattr(model.backward_lstms[layer], f"{name}_l0").copy_(getattr(reference, f"{name}_l{layer}_reverse"))
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0], [12, 0, 0, 0, 0, 0]])
    lengths = (ids != 0).sum(1)
    with torch.no_grad():
        x = model.embeddings(ids)
        ours = model.encode(x, lengths)
        packed, _ = reference(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        theirs, _ = pad_packed_sequence(packed, batch_first=True, total_length=ids.size(1))
    valid = (ids != 0).unsqueeze(-1)
    assert torch.allclose(ours * valid, theirs * valid, atol=1e-6)
    assert not torch.allclose(ours[1, :3], model.encode(x[1:2], torch.tensor([6]))[0, :3], atol=1e-3), \
        "reading the padding should change the backward states; the check above would then mean nothing"


def test_vectors_file_glove_and_word2vec_formats(imdb_tokenizer, tmp_path):
    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    glove = tmp_path / "glove.txt"
    glove.write_text("movie 1 2 3\nThe 4 5 6\nzzzunknownzzz 7 8 9\n", encoding="utf-8")
    table, coverage = load_vectors_file(glove, tok, 3)
    assert table.shape == (len(tok), 3) and 0 < coverage < 0.01
    assert np.allclose(table[tok.convert_tokens_to_ids("movie")], [1, 2, 3])
    assert np.allclose(table[tok.convert_tokens_to_ids("the")], [4, 5, 6])  # lower-cased fallback
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("1 3\nmovie 1 2 3\n", encoding="utf-8")
    assert np.allclose(load_vectors_file(w2v, tok, 3)[0][tok.convert_tokens_to_ids("movie")], [1, 2, 3])
    bad = tmp_path / "bad.txt"
    bad.write_text("movie 1 2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt:1: expected a word and 3 numbers"):
        load_vectors_file(bad, tok, 3)


def test_config_file_with_overrides(tmp_path):
    from imdb_llm.imdb.data import ImdbArguments

    cfg = tmp_path / "c.yaml"
    cfg.write_text("validation_ratio: 0.2\nmax_train_samples: 10\n")
    data_args, merged = parse_args((ImdbArguments,), [str(cfg), "--validation_ratio", "0.3"])
    assert data_args.validation_ratio == 0.3 and data_args.max_train_samples == 10
    assert merged["validation_ratio"] == "0.3" and merged["_config_file"] == str(cfg)
    assert config_to_argv({"a": [1, 2], "b": True, "c": None}) == ["--a", "1", "2", "--b", "true"]
    cfg.write_text("no_such_argument: 1\n")
    with pytest.raises(UserError, match="unknown argument"):
        parse_args((ImdbArguments,), [str(cfg)])


@pytest.mark.parametrize("target, model_type", [("imdb-textcnn", "textcnn"), ("imdb-lstm", "bilstm")])
def test_make_target_smoke(target, model_type, imdb_dir, tmp_path):
    """The real make target, on the fixture, with tiny sizes: tokenizer -> model -> test -> result."""
    tok, out, results = tmp_path / "tok", tmp_path / "out", tmp_path / "results"
    args = " ".join(TINY + ["--tokenizer_name", str(tok), "--output_dir", str(out), "--results_dir", str(results),
                            "--word2vec_cache", str(tmp_path / "w2v.npy")])
    proc = subprocess.run(
        ["make", target, f"IMDB_DIR={imdb_dir}", f"PY={sys.executable}", f"ARGS={args}",
         f"TOKENIZER_ARGS=--output_dir {tok} --vocab_size 1500"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "all_results.json", "loss_curve.png",
                 "confusion_matrix.png", "test_predictions.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard log"
    result = json.loads((results / f"{target}.json").read_text())
    assert result["metrics"]["n_test"] == 120 and 0.0 <= result["metrics"]["test_accuracy"] <= 1.0
    # The exact command, ARGS included, so the run can be repeated from the result file alone.
    assert result["command"] == f"make {target} ARGS='{args}'" and result["config"]["model_type"] == model_type
    assert (results / f"{target}.log").read_text().strip()
    preds = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    acc = sum(p["correct"] for p in preds) / len(preds)
    assert abs(acc - result["metrics"]["test_accuracy"]) < 1e-9
    # Rows in dataset order (group_by_length used to shuffle predict()'s rows), and the saved
    # probabilities keyed by review id agree with them.
    from imdb_llm.imdb.data import load_imdb
    from imdb_llm.probs import read_probs

    assert [p["label"] for p in preds] == load_imdb(dataset_dir=str(imdb_dir))["test"]["label"]
    probs, meta = read_probs(results / f"{target}.probs.parquet")
    assert list(probs["test"]["id"]) == [p["index"] for p in preds] and meta["split_seed"] == 42
    assert [int(x > 0) for x in probs["test"]["logit"]] == [p["prediction"] for p in preds]
    assert len(probs["validation"]["id"]) > 0
    assert AutoConfig.from_pretrained(out).model_type == model_type


def test_a_finished_run_resumes_from_its_checkpoint_and_refuses_other_settings(imdb_tokenizer, imdb_dir, tmp_path):
    """train_textclf.py is on the shared resume path (imdb_llm.resume), like every other trainer."""
    out, results = tmp_path / "out", tmp_path / "results"
    flags = ["scripts/train_textclf.py", "configs/imdb_textcnn.yaml", *TINY, "--embedding_init", "random", "--tokenizer_name", str(imdb_tokenizer),
             "--dataset_dir", str(imdb_dir), "--output_dir", str(out), "--results_dir", str(results), "--results_name", "resumed",
             "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2", "--resume_from_checkpoint", "auto"]
    first = subprocess.run([sys.executable, *flags], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run([sys.executable, *flags], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resuming from" in again.stdout + again.stderr, again.stderr[-2000:]
    other = subprocess.run([sys.executable, *flags, "--learning_rate", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "learning_rate" in other.stderr.strip().splitlines()[-1]


def test_bad_model_type_fails_before_training(imdb_tokenizer, imdb_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "scripts/train_textclf.py", "configs/imdb_textcnn.yaml", "--model_type", "transformer",
         "--tokenizer_name", str(imdb_tokenizer), "--dataset_dir", str(imdb_dir), "--output_dir", str(out),
         "--embedding_init", "random", "--results_dir", str(tmp_path / "r")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --model_type")
    assert not (tmp_path / "r").exists() and not (out / "model.safetensors").exists()


def test_accelerate_two_processes(imdb_tokenizer, imdb_dir, tmp_path):
    """DDP on 2 CPU processes: the same script under accelerate; with no GPU, torchrun + gloo."""
    out, results = tmp_path / "out", tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no",
         "scripts/train_textclf.py", "configs/imdb_textcnn.yaml", *TINY, "--embedding_init", "word2vec",
         "--tokenizer_name", str(imdb_tokenizer), "--dataset_dir", str(imdb_dir), "--output_dir", str(out),
         "--word2vec_cache", str(tmp_path / "w2v.npy"), "--results_dir", str(results), "--results_name", "ddp"],
        # accelerate's --cpu flag means one process; --multi_gpu + ACCELERATE_USE_CPU gives gloo DDP.
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "ACCELERATE_USE_CPU": "true"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    state = json.loads(sorted(out.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    # 64 samples, batch 16 per process, 2 processes -> 2 optimizer steps per epoch.
    assert state["global_step"] == 2
    assert json.loads((results / "ddp.json").read_text())["metrics"]["n_test"] == 120


def test_make_demo_runs_offline_on_the_shipped_sample(tmp_path):
    """`make demo` end to end on data/imdb_sample, shrunk so it takes seconds, output redirected."""
    tok, out = tmp_path / "tok", tmp_path / "out"
    small = "--max_train_samples 300 --max_unsupervised_samples 300"
    args = (f"{small} --max_test_samples 100 --tokenizer_name {tok} --output_dir {out} --word2vec_cache {tmp_path / 'w2v.npy'} "
            "--num_train_epochs 1 --word2vec_epochs 1 --embedding_dim 16 --num_filters 8 --max_length 64 --dataloader_num_workers 0")
    proc = subprocess.run(
        ["make", "demo", f"PY={sys.executable}", f"ARGS={args}", f"TOKENIZER_ARGS={small} --output_dir {tok} --vocab_size 1500"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "test accuracy" in proc.stdout and "Next:" in proc.stdout
    assert (out / "confusion_matrix.png").is_file() and (out / "loss_curve.png").is_file()
    assert json.loads((out / "test_results.json").read_text())["n_test"] == 100


@pytest.mark.parametrize("config", ["imdb_textcnn.yaml", "imdb_lstm.yaml"])
def test_precision_benchmark_only_writes_figures_and_trains_nothing(config, imdb_tokenizer, imdb_dir, tmp_path):
    """fp32 vs bf16 autocast on the same batches, as its own result; no model, no test evaluation."""
    out, results = tmp_path / "out", tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "scripts/train_textclf.py", f"configs/{config}", *TINY, "--tokenizer_name", str(imdb_tokenizer),
         "--dataset_dir", str(imdb_dir), "--output_dir", str(out), "--embedding_init", "random", "--results_dir", str(results),
         "--results_name", "bench", "--benchmark_precision_steps", "2", "--benchmark_warmup_steps", "1", "--benchmark_only", "true"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from imdb_llm.precision import cpu_has_native_bf16

    m = json.loads((results / "bench-precision-bench.json").read_text())["metrics"]
    assert m["bench_fp32_samples_per_second"] > 0 and m["bench_bf16_samples_per_second"] > 0 and m["bench_precision_steps"] == 2
    assert m["bench_speedup_bf16_vs_fp32"] == pytest.approx(m["bench_bf16_samples_per_second"] / m["bench_fp32_samples_per_second"], rel=1e-2, abs=1e-3)  # rounded to 3 decimals
    assert m["native_bf16"] is cpu_has_native_bf16() and m["bench_batch_size"] == 16 and "test_accuracy" not in m
    assert not (out / "model.safetensors").exists() and not (results / "bench.json").exists()


def test_bad_precision_choice_is_one_line(imdb_tokenizer, imdb_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/train_textclf.py", "configs/imdb_textcnn.yaml", "--mixed_precision", "fp8", "--tokenizer_name", str(imdb_tokenizer),
         "--dataset_dir", str(imdb_dir), "--output_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "r")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: --mixed_precision must be one of auto, bf16, fp16, no, got 'fp8'"
    assert not (tmp_path / "out").exists()
