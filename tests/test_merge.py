"""merge_adapter.py: merged weights give the same logits as base + adapter, and load like any model."""

from pathlib import Path

import pytest
import torch

from imdb_llm.llm.sft.data import load_conversations
from tiny_models import make_tiny_glm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    convs, _ = load_conversations(str(REPO / "tests" / "fixtures" / "sft" / "train.jsonl"))
    root = tmp_path_factory.mktemp("merge")
    base = make_tiny_glm(root / "base", [m["content"] for c in convs for m in c["messages"]])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(1)
    # init_lora_weights=False: random A *and* B, so the adapter really changes the outputs
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(root / "adapter")
    return base, str(root / "adapter")


def test_merged_logits_equal_base_plus_adapter(base_and_adapter, tmp_path):
    import merge_adapter

    from imdb_llm.llm.loading import load_causal_lm

    base, adapter = base_and_adapter
    out = merge_adapter.main(["--model_name_or_path", base, "--adapter", adapter, "--output_dir", str(tmp_path / "merged"), "--dtype", "float32"])
    ids = torch.randint(4, 500, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with_adapter = load_causal_lm(base, adapter=adapter, dtype="float32").eval()(input_ids=ids).logits
        plain = load_causal_lm(base, dtype="float32").eval()(input_ids=ids).logits
        merged_model = load_causal_lm(out, dtype="float32").eval()  # an ordinary model folder: no peft needed
        merged = merged_model(input_ids=ids).logits
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    assert (with_adapter - plain).abs().max() > 1e-3  # the adapter matters ...
    torch.testing.assert_close(merged, with_adapter, atol=1e-4, rtol=1e-4)  # ... and the merge keeps it exactly
    assert (Path(out) / "tokenizer_config.json").is_file()


def test_merge_refuses_bad_input_and_existing_output(base_and_adapter, tmp_path, capsys):
    import merge_adapter

    base, adapter = base_and_adapter
    with pytest.raises(SystemExit) as exc:
        merge_adapter.main(["--model_name_or_path", base, "--adapter", str(tmp_path), "--output_dir", str(tmp_path / "m")])
    assert exc.value.code == 2 and "not a LoRA adapter folder" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit):
        merge_adapter.main(["--model_name_or_path", base, "--adapter", adapter, "--output_dir", str(tmp_path / "exists")])
    assert "exists; pass --overwrite true" in capsys.readouterr().err


def test_eval_chat_scores_base_and_adapter(base_and_adapter, tmp_path):
    import json

    import eval_chat

    base, adapter = base_and_adapter
    metrics = eval_chat.main(["--model_name_or_path", base, "--adapter", adapter, "--dtype", "float32",
                              "--validation_file", str(REPO / "tests" / "fixtures" / "sft" / "validation.jsonl"),
                              "--max_eval_samples", "2", "--max_new_tokens", "6", "--metric_tokens", "char",
                              "--results_name", "tiny-eval", "--results_dir", str(tmp_path)])
    assert metrics["n_eval"] == 2 and {"base_rouge-l", "adapter_rouge-l", "base_bleu-4", "adapter_bleu-4"} <= set(metrics)
    rows = [json.loads(l) for l in (tmp_path / "tiny-eval.predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and rows[0]["base"] != rows[0]["adapter"]  # the random adapter changes the greedy answer
    assert json.loads((tmp_path / "tiny-eval.json").read_text(encoding="utf-8"))["metrics"]["n_eval"] == 2
