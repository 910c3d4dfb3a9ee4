"""From-scratch BERT / GPT-2 track (scripts/run_scratch.py) on CPU with tiny configs:
both tracks end to end, stage skipping, kill-and-resume, bad input, and the sparse MLM head."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    return importlib.import_module("run_scratch")  # scripts/ is on pytest's pythonpath (pyproject.toml)


@pytest.fixture(scope="module")
def run_scratch():
    return _load_script()


def tiny_argv(track, imdb_dir, tokenizer, out, *extra):
    return [
        str(REPO / "configs" / f"scratch_{track}_tiny.yaml"),
        "--dataset_dir", str(imdb_dir),
        "--tokenizer_name", str(tokenizer),
        "--output_dir", str(out / "run"),
        "--results_name", f"scratch-{track}-tiny",
        "--results_dir", str(out / "results"),
        *extra,
    ]  # fmt: skip


def read_result(out, track):
    return json.loads((out / "results" / f"scratch-{track}-tiny.json").read_text())


def test_bert_track_end_to_end_then_skips_finished_stages(run_scratch, imdb_dir, imdb_tokenizer, tmp_path, capsys):
    run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path))
    result = read_result(tmp_path, "bert")
    m = result["metrics"]
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["n_test"] == 64
    assert m["pretrain_objective"] == "mlm" and m["pretrain_steps"] == 10
    # 10 steps x 8 blocks x 64 tokens, one process
    assert m["pretrain_tokens"] == 10 * 8 * 64 and m["pretrain_tokens_per_second"] > 0
    assert m["pretrain_eval_perplexity"] > 1 and m["finetune_seconds"] > 0
    # Classification tokens: one epoch of the labelled reviews, each at most 128 tokens.
    assert 0 < m["finetune_tokens"] <= m["n_train_labelled"] * 128
    # (finetune_seconds is rounded to 0.01 s, and this stage takes a fraction of a second)
    assert m["finetune_tokens_per_second"] == pytest.approx(m["finetune_tokens"] / m["finetune_seconds"], rel=0.05)
    assert result["parameters"] > 0 and result["train_seconds"] >= m["finetune_seconds"]
    run = tmp_path / "run"
    assert json.loads((run / "pretrain" / "final" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    for name in ("all_results.json", "test_predictions.jsonl", "loss_curve.png", "confusion_matrix.png", "model.safetensors"):
        assert (run / "classify" / name).is_file(), name
    assert len((run / "classify" / "test_predictions.jsonl").read_text().splitlines()) == 64

    # Same command again: both stages are found complete and nothing is retrained.
    before = (tmp_path / "results" / "scratch-bert-tiny.json").stat().st_mtime_ns
    capsys.readouterr()
    run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path))
    log = capsys.readouterr()
    assert "Stage 1 already complete" in log.out + log.err and "Stage 2 already complete" in log.out + log.err
    assert (tmp_path / "results" / "scratch-bert-tiny.json").stat().st_mtime_ns == before

    # Different architecture in the same output_dir: refused in one line, nothing touched.
    with pytest.raises(SystemExit) as exc:
        run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path, "--hidden_size", "64"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "model_args.hidden_size" in err[-1]
    assert (run / "pretrain" / "final" / "pretrain_metrics.json").is_file()


def test_trained_tokens_is_samples_times_the_mean_review_length():
    from datasets import Dataset

    from imdb_llm.imdb.training import trained_tokens

    reviews = Dataset.from_dict({"input_ids": [[1, 2], [1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]})  # mean length 4
    assert trained_tokens(reviews, 3) == 12  # one epoch: every review once
    assert trained_tokens(reviews, 7.5) == 30  # two and a half epochs
    assert trained_tokens(reviews.select([]), 5) == 0


def test_gpt_track_end_to_end(run_scratch, imdb_dir, imdb_tokenizer, tmp_path):
    # Fewer validation blocks (3) than one pretraining batch (8): the final loss must still be measured.
    run_scratch.main(tiny_argv("gpt", imdb_dir, imdb_tokenizer, tmp_path, "--max_test_samples", "32", "--pretrain_eval_blocks", "3"))
    m = read_result(tmp_path, "gpt")["metrics"]
    assert m["pretrain_objective"] == "clm" and m["model_type"] == "gpt2"
    assert m["pretrain_eval_perplexity"] > 1
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["n_test"] == 32
    assert m["pretrain_tokens_per_second"] > 0
    config = json.loads((tmp_path / "run" / "classify" / "config.json").read_text())
    assert config["architectures"] == ["GPT2ForSequenceClassification"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    assert config["pad_token_id"] == tok.pad_token_id and config["eos_token_id"] == tok.sep_token_id


def test_kill_during_pretraining_then_resume(run_scratch, imdb_dir, imdb_tokenizer, tmp_path):
    # 80 steps, a checkpoint every 5: on an idle machine 20 tiny steps could all finish between seeing
    # the first checkpoint and the kill, and there would be nothing left to resume.
    argv = tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path, "--pretrain_max_steps", "80", "--max_test_samples", "16")
    pretrain_dir = tmp_path / "run" / "pretrain"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_scratch.py"), *argv], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if list(pretrain_dir.glob("checkpoint-*/trainer_state.json")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the first run ended before it could be killed:\n" + (tmp_path / "first.log").read_text()[-2000:]
        assert list(pretrain_dir.glob("checkpoint-*/trainer_state.json")), "no checkpoint within the deadline"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group holds only the process started above
        proc.wait()
    assert not (pretrain_dir / "final").exists()

    run_scratch.main(argv)  # the same command again
    m = read_result(tmp_path, "bert")["metrics"]
    assert m["pretrain_steps"] == 80
    assert m["pretrain_resumed_from_step"] >= 5 and m["pretrain_resumed_from_step"] % 5 == 0
    assert m["pretrain_steps_this_session"] == 80 - m["pretrain_resumed_from_step"]
    assert "Stage 1: resuming from" in (tmp_path / "run" / "run.log").read_text()
    assert m["n_test"] == 16


def test_bad_input_is_one_line_and_writes_nothing(run_scratch, imdb_dir, imdb_tokenizer, tmp_path, capsys):
    # Exit code 2 and a one-line "error: ..." on stderr (run_main), checked in-process: cheaper.
    cases = [
        (["--model_type", "lstm"], "error: --model_type must be one of bert, gpt2, got 'lstm'"),
        (["--tokenizer_name", str(tmp_path / "missing")], "tokenizer folder not found"),
        (["--block_size", "4096"], "--block_size 4096 must be in"),
        (["--hidden_size", "30", "--num_attention_heads", "4"], "not divisible"),
        (["--dataset_dir", str(tmp_path / "no-data")], "no such file or directory"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path, *extra))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "results").exists() and not (tmp_path / "run").exists()


def test_sparse_mlm_head_gives_the_dense_loss():
    import torch
    from transformers import BertForMaskedLM

    from imdb_llm.imdb.scratch import ScratchModelArguments, build_pretraining_model

    class Tok:
        pad_token_id, cls_token_id, sep_token_id = 0, 2, 3

        def __len__(self):
            return 100

    args = ScratchModelArguments(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, dropout=0.0)
    sparse = build_pretraining_model(args, Tok()).eval()
    dense = BertForMaskedLM(sparse.config).eval()
    dense.load_state_dict(sparse.state_dict())
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (3, 16))
    labels = torch.full_like(ids, -100)
    labels[:, ::4] = ids[:, ::4]
    with torch.no_grad():
        a, b = sparse(input_ids=ids, labels=labels), dense(input_ids=ids, labels=labels)
    assert torch.allclose(a.loss, b.loss, atol=1e-5)
    assert a.logits.shape == (int((labels != -100).sum()), 100)


def test_sparse_clm_head_scores_the_sampled_positions_and_saves_as_gpt2(tmp_path):
    """clm_loss_fraction < 1: in training, the next-token loss at the sampled positions equals the
    dense model's loss restricted to them; in evaluation every position counts, as in GPT-2."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2LMHeadModel

    from imdb_llm.imdb.scratch import ScratchModelArguments, build_pretraining_model

    class Tok:
        pad_token_id, cls_token_id, sep_token_id = 0, 2, 3

        def __len__(self):
            return 100

    args = ScratchModelArguments(model_type="gpt2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, dropout=0.0,
                                 clm_loss_fraction=0.3)
    sparse = build_pretraining_model(args, Tok())
    dense = GPT2LMHeadModel(sparse.config)
    dense.load_state_dict(sparse.state_dict())
    ids = torch.randint(5, 100, (3, 16), generator=torch.Generator().manual_seed(0))
    sparse.train()  # (dropout 0: train mode only switches the sampling on)
    torch.manual_seed(1)
    with torch.no_grad():
        got = sparse(input_ids=ids, labels=ids)
    torch.manual_seed(1)
    keep = torch.rand(ids[:, 1:].shape) < 0.3  # the same draw the model made
    with torch.no_grad():
        logits = dense(input_ids=ids).logits[:, :-1]
    expected = F.cross_entropy(logits[keep], ids[:, 1:][keep])
    assert got.logits.shape[0] == int(keep.sum()) < ids[:, 1:].numel()
    assert torch.allclose(got.loss, expected, atol=1e-5)
    sparse.eval()
    with torch.no_grad():
        assert torch.allclose(sparse(input_ids=ids, labels=ids).loss, dense(input_ids=ids, labels=ids).loss, atol=1e-5)
    sparse.save_pretrained(tmp_path)
    assert isinstance(GPT2LMHeadModel.from_pretrained(tmp_path), GPT2LMHeadModel)


def test_group_texts_packs_documents_into_full_blocks():
    from imdb_llm.imdb.text import group_texts

    out = group_texts({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}, block_size=4)
    assert out["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the short tail (9) is dropped


@pytest.mark.parametrize("config", ["scratch_bert.yaml", "scratch_gpt.yaml", "scratch_bert_tiny.yaml", "scratch_gpt_tiny.yaml", "scratch_bert_cpu.yaml", "scratch_gpt_cpu.yaml"])
def test_configs_parse_and_pass_the_checks(run_scratch, config):
    from imdb_llm.cli import parse_args
    from imdb_llm.imdb.scratch import check_arguments

    # The H200 recipes ask for bf16/TF32, which CPU-only TrainingArguments refuse: switch them off here.
    argv = [str(REPO / "configs" / config), "--use_cpu", "true", "--bf16", "false", "--tf32", "false"]
    model_args, scratch_args, _data, result_args, _run, _bench, training_args, merged = parse_args(run_scratch.argument_types(), argv)
    check_arguments(model_args, scratch_args)
    assert model_args.model_type == ("bert" if "bert" in config else "gpt2")
    assert training_args.eval_strategy == ("steps" if "cpu" in config else "epoch")
    if "tiny" not in config and "cpu" not in config:  # the H200 recipes: whole reviews, pretraining at the classification length
        assert scratch_args.max_seq_length == scratch_args.block_size == 512 and scratch_args.head_tokens == 128
        assert result_args.results_name == f"imdb-scratch-{'bert' if 'bert' in config else 'gpt'}"
        assert training_args.torch_compile and scratch_args.classify_torch_compile is False


@pytest.mark.parametrize("pair", [("scratch_bert.yaml", "scratch_gpt.yaml"), ("scratch_bert_cpu.yaml", "scratch_gpt_cpu.yaml")])
def test_bert_and_gpt_configs_differ_only_in_the_objective(pair):
    """The comparison is only fair if model size, data, budget and fine-tuning recipe are shared."""
    from imdb_llm.cli import load_config_file

    bert, gpt = (load_config_file(REPO / "configs" / name) for name in pair)
    objective_keys = {"model_type", "sparse_mlm", "clm_loss_fraction", "mlm_probability", "pretrain_learning_rate", "pretrained_model", "output_dir", "results_name"}
    differing = {k for k in set(bert) | set(gpt) if bert.get(k) != gpt.get(k)}
    assert differing <= objective_keys, differing - objective_keys
    assert (bert["model_type"], gpt["model_type"]) == ("bert", "gpt2")


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_classifier_starts_from_the_pretrained_weights(model_type, imdb_tokenizer, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from imdb_llm.imdb.scratch import ScratchModelArguments, build_classifier, build_pretraining_model

    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    args = ScratchModelArguments(model_type=model_type, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64)
    lm = build_pretraining_model(args, tok)
    lm.save_pretrained(tmp_path)
    clf = build_classifier(args, tok, str(tmp_path))
    lm_params, clf_params = dict(lm.named_parameters()), dict(clf.named_parameters())
    shared = [k for k in clf_params if k in lm_params]
    body = "bert.encoder." if model_type == "bert" else "transformer.h."
    assert any(k.startswith(body) for k in shared)
    for k in shared:
        assert torch.equal(lm_params[k], clf_params[k]), k
    assert clf.config.pad_token_id == tok.pad_token_id and clf.config.num_labels == 2


def test_precision_benchmark_of_the_pretraining_stage(run_scratch, imdb_dir, imdb_tokenizer, tmp_path):
    """--benchmark_only: fp32 vs bf16 autocast on the same MLM blocks and masks, written as its own result; no stage runs."""
    run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path, "--benchmark_precision_steps", "2", "--benchmark_warmup_steps", "1",
                               "--benchmark_only", "true"))
    from imdb_llm.precision import cpu_has_native_bf16

    m = json.loads((tmp_path / "results" / "scratch-bert-tiny-precision-bench.json").read_text())["metrics"]
    assert m["bench_stage"] == "pretraining" and m["objective"] == "mlm" and m["bench_block_size"] == 64
    assert m["bench_fp32_samples_per_second"] > 0 and m["bench_bf16_samples_per_second"] > 0 and m["native_bf16"] is cpu_has_native_bf16()
    assert not (tmp_path / "run" / "pretrain").exists() and not (tmp_path / "results" / "scratch-bert-tiny.json").exists()


def test_embedding_init_keeps_word_neighbours_at_the_transformers_scale(tmp_path):
    import numpy as np

    from imdb_llm.cli import UserError
    from imdb_llm.imdb.scratch import embedding_table

    rng = np.random.default_rng(0)
    # 40 words in 3 tight clusters, in 12 dimensions: a 4-wide model must keep who is near whom.
    centres = rng.normal(0, 3, size=(3, 12))
    table = np.repeat(centres, [14, 13, 13], axis=0) + rng.normal(0, 0.05, size=(40, 12))
    path = tmp_path / "w2v.npy"
    np.save(path, table)
    out = embedding_table(str(path), vocab_size=40, hidden_size=4, std=0.02, pad_token_id=39)
    assert out.shape == (40, 4) and out.dtype == np.float32
    assert np.all(out[39] == 0)
    assert abs(out[:39].std() - 0.02) < 0.005
    unit = out[:39] / np.linalg.norm(out[:39], axis=1, keepdims=True)
    nearest = np.argsort(-(unit @ unit.T), axis=1)[:, 1]
    cluster = np.repeat([0, 1, 2], [14, 13, 13])[:39]
    assert np.all(cluster[nearest] == cluster)

    with pytest.raises(UserError, match=r"shape \(40, 12\), expected \(41, dim\)"):
        embedding_table(str(path), vocab_size=41, hidden_size=4, std=0.02, pad_token_id=0)
    with pytest.raises(UserError, match="fewer than hidden_size 16"):
        embedding_table(str(path), vocab_size=40, hidden_size=16, std=0.02, pad_token_id=0)


def test_embedding_init_reaches_the_model_and_its_seconds_count(run_scratch, imdb_dir, imdb_tokenizer, tmp_path):
    """The word vectors start the tied embeddings, and their training time is part of the run's."""
    import numpy as np
    from transformers import AutoTokenizer

    from imdb_llm.imdb.embeddings import write_provenance

    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    path = tmp_path / "w2v.npy"
    np.save(path, np.random.default_rng(0).normal(0, 0.3, size=(len(tok), 48)).astype(np.float32))
    write_provenance(path, 1234.5, text="test table")
    run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path, "--embedding_init", str(path), "--max_test_samples", "16"))
    result = read_result(tmp_path, "bert")
    m = result["metrics"]
    assert m["embedding_init"] == str(path) and m["embedding_init_seconds"] == 1234.5
    assert result["train_seconds"] >= 1234.5 + m["pretrain_seconds"] + m["finetune_seconds"] - 0.01

    with pytest.raises(SystemExit) as exc:
        run_scratch.main(tiny_argv("bert", imdb_dir, imdb_tokenizer, tmp_path / "again", "--embedding_init", str(tmp_path / "missing.npy")))
    assert exc.value.code == 2 and not (tmp_path / "again" / "results").exists()
