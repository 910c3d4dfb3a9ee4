"""QLoRA training path on a tiny random ChatGLM2-shaped GlmForCausalLM (4-bit NF4 + LoRA on CPU),
resume after a kill, bad data failing fast, and the speed bench's --tiny smoke run."""

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from imdb_llm.llm.sft.data import load_conversations
from tiny_models import make_tiny_glm

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "sft"


@pytest.fixture(scope="module")
def tiny_glm(tmp_path_factory):
    convs, _ = load_conversations(str(FIX / "train.jsonl"))
    return make_tiny_glm(tmp_path_factory.mktemp("tinyglm"), [m["content"] for c in convs for m in c["messages"]])


def _argv(model, out, *extra):
    return ["--model_name_or_path", str(model), "--train_file", str(FIX / "train.jsonl"), "--validation_file", str(FIX / "validation.jsonl"),
            "--output_dir", str(out), "--max_train_samples", "16", "--max_eval_samples", "4", "--max_length", "160",
            "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
            "--report_to", "none", "--save_strategy", "steps", "--save_steps", "2", "--seed", "0",
            "--answers_cache_dir", str(Path(out).parent / "answers-cache"), *extra]  # never the repo's outputs/


def test_qlora_4bit_lora_trains_and_reports(tiny_glm, tmp_path):
    import sft_qlora

    out, res = tmp_path / "adapter", tmp_path / "results"
    metrics = sft_qlora.main(_argv(tiny_glm, out, "--max_steps", "3", "--gradient_checkpointing", "true", "--optim", "paged_adamw_8bit",
                                   "--packing", "true", "--generate_eval_samples", "2", "--max_new_tokens", "8", "--metric_tokens", "char",
                                   "--results_name", "tiny-qlora", "--results_dir", str(res)))
    assert metrics["quantized_linear_layers"] == 12  # 2 layers x (q, k, v, o, gate_up, down) in NF4
    assert metrics["global_step"] == 3 and 0 < metrics["n_train"] <= 16
    assert metrics["eval_loss"] < metrics["eval_loss_base"]  # lr 5e-3 on a random model: the loss must move down
    assert (out / "adapter_config.json").is_file() and (out / "chat_template.jinja").is_file()
    result = json.loads((res / "tiny-qlora.json").read_text(encoding="utf-8"))
    assert result["metrics"]["tuned_rouge-l"] >= 0 and result["data"]["train"]["read"] == 40
    assert {"base_loop_rate", "tuned_loop_rate", "reference_loop_rate", "tuned_distinct-2"} <= set(result["metrics"])
    assert result["metrics"]["n_judged"] == 2
    skipped = sum(result["data"]["train"]["skipped"].values())
    assert result["data"]["train"]["kept"] == metrics["n_train"] == 16 - skipped  # over-long samples are counted, not lost
    rows = [json.loads(l) for l in (res / "tiny-qlora.predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and {"question", "reference", "base", "tuned"} <= set(rows[0])
    # The settings it judged with are the adapter's generation defaults now (what chat and serve read).
    assert json.loads((out / "generation_defaults.json").read_text())["max_new_tokens"] == 8


class _Layout(TrainerCallback):
    """Records, before every training step, how many 4-bit layers are packed or allowed to pack."""

    def __init__(self):
        self.steps = []

    def on_step_begin(self, args, state, control, model=None, **kw):
        from imdb_llm.llm.sft.quant import is_packed_for_cpu_inference, linear4bit_layers

        layers = linear4bit_layers(model)
        self.steps.append({"layers": len(layers), "packed": sum(map(is_packed_for_cpu_inference, layers)),
                           "may_pack": sum(bool(l.support_avx512bf16_for_cpu) for l in layers)})


def test_base_evaluation_leaves_4bit_layers_trainable_on_any_cpu(tiny_glm, tmp_path, monkeypatch):
    """Regression (issue 13): on AVX512-BF16 CPUs bitsandbytes packs 4-bit weights for inference
    during the base-model evaluation, and training through that layout fails. Pretend every CPU has
    AVX512-BF16 (the layers read the capability when they are built), so this runs everywhere."""
    import bitsandbytes.nn.modules as bnb_modules
    import sft_qlora

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    layout = _Layout()
    metrics = sft_qlora.main(_argv(tiny_glm, tmp_path / "adapter", "--max_steps", "2", "--optim", "adamw_torch",
                                   "--generate_eval_samples", "1", "--max_new_tokens", "4", "--metric_tokens", "char"),
                             extra_callbacks=[layout])
    assert "eval_loss_base" in metrics and metrics["global_step"] == 2  # evaluated first, then trained
    assert [s["layers"] for s in layout.steps] == [12, 12]
    assert all(s["packed"] == 0 and s["may_pack"] == 0 for s in layout.steps), layout.steps


def test_keep_4bit_trainable_unpacks_a_packed_layer():
    """A layer packed before the call is restored to the trainable layout with the same codes."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    from imdb_llm.llm.sft.quant import is_packed_for_cpu_inference, keep_4bit_trainable

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 32, bias=True, compute_dtype=torch.float32, quant_type="nf4", compress_statistics=False)
    layer.load_state_dict(torch.nn.Linear(64, 32).state_dict())
    layer = layer.to("cpu")  # quantises the weights
    codes = layer.weight.data.clone()
    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(layer.weight.data, layer.weight.quant_state)
    assert is_packed_for_cpu_inference(layer) and not torch.equal(layer.weight.data.view(-1), codes.view(-1))
    model = torch.nn.Sequential(layer)
    assert keep_4bit_trainable(model) == 1
    assert not is_packed_for_cpu_inference(layer) and layer.support_avx512bf16_for_cpu is False
    assert torch.equal(layer.weight.data, codes)
    x = torch.randn(3, 64, requires_grad=True)
    layer.train()
    layer(x).sum().backward()  # the training path, with autograd
    assert x.grad is not None and torch.isfinite(x.grad).all()


class _Kill(TrainerCallback):
    """Stand-in for a SIGKILL: stop the process right after step 3 (checkpoint-2 is on disk)."""

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt


def _cpu_bf16():
    import torch

    from imdb_llm.precision import resolve_precision

    return not torch.cuda.is_available() and resolve_precision("auto") == "bf16"


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "adapter_model.safetensors"))


def test_resume_after_kill_matches_uninterrupted(tiny_glm, tmp_path, capsys):
    import sft_qlora

    common = ("--max_steps", "4", "--optim", "adamw_torch", "--load_in_4bit", "false")
    straight = sft_qlora.main(_argv(tiny_glm, tmp_path / "straight", *common, "--generate_eval_samples", "2", "--max_new_tokens", "4",
                                    "--metric_tokens", "char", "--answers_cache_dir", str(tmp_path / "answers")))
    # Answers come from a bf16 copy where training is bf16 autocast on a CPU; the trained weights stay fp32.
    assert straight["generation_dtype"] == ("bfloat16" if _cpu_bf16() else "float32")
    with pytest.raises(KeyboardInterrupt):
        sft_qlora.main(_argv(tiny_glm, tmp_path / "killed", *common), extra_callbacks=[_Kill()])
    assert (tmp_path / "killed" / "checkpoint-2").is_dir() and not (tmp_path / "killed" / "adapter_model.safetensors").exists()
    metrics = sft_qlora.main(_argv(tiny_glm, tmp_path / "killed", *common, "--resume_from_checkpoint", "auto",
                                   "--results_name", "resumed", "--results_dir", str(tmp_path / "results")))
    assert metrics["global_step"] == 4 and metrics["resumed_from_step"] == 2  # resumed, not restarted
    # Training time adds up across the interruption: what checkpoint-2 recorded plus this process's part.
    before = json.loads((tmp_path / "killed" / "checkpoint-2" / "train_clock.json").read_text())["train_seconds"]
    result = json.loads((tmp_path / "results" / "resumed.json").read_text())
    assert before > 0 and result["train_seconds"] == pytest.approx(before + metrics["train_seconds_this_process"], abs=0.2)
    # The summary holds the same whole time: scripts/tune_recipe.py adds its variants' times from it.
    assert metrics["train_seconds"] == pytest.approx(result["train_seconds"], abs=0.1)
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    # The checkpoint of a run with other settings is refused, not continued: that would mix two runs in one result.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        sft_qlora.main(_argv(tiny_glm, tmp_path / "killed", *common, "--max_train_samples", "12", "--resume_from_checkpoint", "auto"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and "was saved by a run with other settings (max_train_samples 16 -> 12)" in err


def test_bad_data_fails_fast_without_output(tiny_glm, tmp_path, capsys):
    import sft_qlora

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "头痛？", "output": "休息"}\n{"instruction": "发烧？"}\n', encoding="utf-8")
    argv = _argv(tiny_glm, tmp_path / "out", "--max_steps", "1")
    argv[argv.index("--train_file") + 1] = str(bad)
    with pytest.raises(SystemExit) as exc:
        sft_qlora.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "bad.jsonl:2: missing field(s) output" in err
    assert not (tmp_path / "out").exists()


def test_bench_tiny_fast_matches_textbook_loss(tmp_path):
    import bench_qlora

    metrics = bench_qlora.main(["--tiny", "--steps", "1", "--warmup_steps", "0", "--batch_size", "1", "--seq_len", "32",
                                "--ce_chunk_tokens", "8", "--checkpoint_layers", "1", "--results_name", "bench-tiny", "--results_dir", str(tmp_path)])
    result = json.loads((tmp_path / "bench-tiny.json").read_text(encoding="utf-8"))
    fast, textbook = result["variants"]["fast"], result["variants"]["textbook"]
    assert metrics["tokens_per_s"] > 0 and fast["checkpointed_layers"] == 1 and textbook["checkpointed_layers"] == 2
    # same seeded random model and tokens: chunked CE + SDPA give the textbook loss (bf16 tolerance)
    assert abs(fast["final_loss"] - textbook["final_loss"]) < 0.05 * textbook["final_loss"]


def test_carve_is_seeded_disjoint_and_keeps_order():
    from imdb_llm.llm.sft.data import carve

    kept, carved = carve(list(range(100)), 10, seed=42)
    assert len(carved) == 10 and sorted(kept + carved) == list(range(100)) and kept == sorted(kept) and carved == sorted(carved)
    assert carve(list(range(100)), 0.1, seed=42) == (kept, carved)  # a share means the same number
    assert carve(list(range(100)), 0, seed=42) == (list(range(100)), [])


# The med-expert recipe (configs/smollm2_med_expert_cpu.yaml) in miniature: validation carved from
# train, evaluated every 2 steps with the best checkpoint kept, a decoding search, a final judging.
LONG = ("--load_in_4bit", "false", "--optim", "adamw_torch", "--max_steps", "-1", "--num_train_epochs", "2", "--carve_validation", "8",
        "--eval_strategy", "steps", "--eval_steps", "2", "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_loss",
        "--greater_is_better", "false", "--generate_eval_samples", "3", "--metric_tokens", "char", "--max_new_tokens", "6",
        "--decoding_candidates", "max_new_tokens=6", "repetition_penalty=1.3,no_repeat_ngram_size=2", "--decoding_search_samples", "4",
        "--resume_from_checkpoint", "auto")


class _KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def _predictions(path):
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines()]


def test_long_run_resumes_after_a_stop_in_training_or_in_judging(tiny_glm, tmp_path, monkeypatch):
    import sft_qlora

    from imdb_llm.llm.sft import judging

    from imdb_llm.llm.generation import resolve_generation_defaults

    res = tmp_path / "results"
    straight = sft_qlora.main(_argv(tiny_glm, tmp_path / "straight", *LONG, "--results_name", "straight", "--results_dir", str(res)))
    assert straight["n_carved"] == 8 and straight["n_judged"] == 3 and straight["n_search"] == 4
    assert straight["global_step"] == 6  # 11 of the 16 records fit max_length: 3 steps an epoch
    history = straight["eval_loss_history"]
    assert [h["step"] for h in history] == [2, 4, 6]  # the carved validation, every 2 steps
    assert straight["eval_loss"] == pytest.approx(min(h["eval_loss"] for h in history), abs=1e-4)  # the best one is kept
    assert straight["chosen_step"] in (2, 4, 6)
    result = json.loads((res / "straight.json").read_text(encoding="utf-8"))
    table = result["decoding_search"]["candidates"]
    assert len(table) == 2 and sum(row["chosen"] for row in table) == 1
    chosen = next(row["settings"] for row in table if row["chosen"])
    # The choice is the adapter's generation defaults: what eval_chat, chat and serve now decode with.
    assert resolve_generation_defaults(str(tiny_glm), str(tmp_path / "straight")).to_dict() == chosen
    assert {k: v for k, v in result["generation_defaults"].items() if k != "source"} == chosen
    assert {"base_rouge-l", "tuned_rouge-l", "base_loop_rate", "tuned_loop_rate", "reference_loop_rate", "tuned_bleu-4",
            "tuned_distinct-2"} <= set(result["metrics"])
    assert result["data"]["judged"]["kept"] == 3 and "carved" in result["data"]["validation"]["source"]

    # 1. Stopped in training (after step 3; checkpoint-2 is on disk), then run again.
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        sft_qlora.main(_argv(tiny_glm, killed, *LONG), extra_callbacks=[_KillAt(3)])
    assert (killed / "checkpoint-2").is_dir() and not (killed / "generation_defaults.json").exists()
    # 2. Stopped again, in the decoding search after training ended (the last checkpoint is saved).
    monkeypatch.setattr(judging, "choose_decoding", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        sft_qlora.main(_argv(tiny_glm, killed, *LONG))
    monkeypatch.undo()
    assert (killed / "checkpoint-6").is_dir()
    # 3. The same command finishes the job without training again, and gives the uninterrupted run's result.
    resumed = sft_qlora.main(_argv(tiny_glm, killed, *LONG, "--results_name", "resumed", "--results_dir", str(res)))
    assert resumed["resumed_from_step"] == 6 and resumed["global_step"] == 6 and resumed["base_answers_cached"] is True
    assert resumed["chosen_step"] == straight["chosen_step"] and resumed["eval_loss"] == pytest.approx(straight["eval_loss"], abs=1e-4)
    a, b = _adapter(tmp_path / "straight"), _adapter(killed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert _predictions(res / "resumed.predictions.jsonl") == _predictions(res / "straight.predictions.jsonl")
    assert json.loads((res / "resumed.json").read_text())["generation_defaults"] == result["generation_defaults"]
    # The result's log holds every sitting (each checkpoint carries the log so far), in order.
    log = (res / "resumed.log").read_text(encoding="utf-8")
    assert log.count("validation loss of the base model") == 3
    assert 0 <= log.index("resumed from checkpoint-2") < log.index("resumed from checkpoint-6")
    assert "resumed from" not in (res / "straight.log").read_text(encoding="utf-8")


def test_decoding_search_needs_a_carved_validation(tiny_glm, tmp_path, capsys):
    import sft_qlora

    with pytest.raises(SystemExit) as exc:
        sft_qlora.main(_argv(tiny_glm, tmp_path / "out", "--max_steps", "1", "--decoding_candidates", "repetition_penalty=1.2"))
    assert exc.value.code == 2 and "--carve_validation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sft_qlora.main(_argv(tiny_glm, tmp_path / "out", "--max_steps", "1", "--carve_validation", "4", "--decoding_candidates", "rep=1.2"))
    assert "unknown generation setting" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_full_fine_tuning_judges_against_the_untouched_base(tiny_glm, tmp_path):
    import eval_chat
    import sft_qlora

    out, res = tmp_path / "full", tmp_path / "results"
    metrics = sft_qlora.main(_argv(tiny_glm, out, "--finetuning", "full", "--load_in_4bit", "false", "--optim", "adamw_torch",
                                   "--max_steps", "2", "--carve_validation", "8", "--generate_eval_samples", "2", "--max_new_tokens", "5",
                                   "--repetition_penalty", "1.2", "--metric_tokens", "char", "--results_name", "full", "--results_dir", str(res)))
    result = json.loads((res / "full.json").read_text(encoding="utf-8"))
    assert metrics["quantized_linear_layers"] == 0 and result["method"] == "full fine-tuning" and "lora" not in result
    assert metrics["eval_loss"] < metrics["eval_loss_base"] and metrics["n_judged"] == 2
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    # The base answers come from the base weights, not from the tuned model.
    rows = _predictions(res / "full.predictions.jsonl")
    assert any(r["base"] != r["tuned"] for r in rows)
    # eval_chat reads the tuned folder's generation defaults (the flag given to sft_qlora) and judges it against the base.
    scored = eval_chat.main(["--model_name_or_path", str(tiny_glm), "--tuned_model", str(out), "--dtype", "float32",
                             "--validation_file", str(FIX / "validation.jsonl"), "--max_eval_samples", "2", "--metric_tokens", "char"])
    assert {"base_rouge-l", "tuned_rouge-l", "tuned_loop_rate", "reference_loop_rate"} <= set(scored)
    assert json.loads((out / "generation_defaults.json").read_text())["repetition_penalty"] == 1.2
