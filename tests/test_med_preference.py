"""Near-miss preference tuning (issue 48): the pairs, the CPO-SimPO loss, and the training script path
that starts from a trained adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imdb_llm.cli import UserError
from imdb_llm.llm.med.preference import PreferenceArguments, PreferenceCollator, near_miss_answers, simpo_loss

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "sft"

QUESTIONS = ["糖尿病患者应该吃什么药？", "糖尿病患者可以吃什么药控制血糖？", "高血压患者应该吃什么药？", "孩子发烧咳嗽怎么办？", "孩子发烧咳嗽三天怎么办？"]
ANSWERS = ["可以使用二甲双胍控制血糖。", "可以使用二甲双胍控制血糖。", "可以使用氨氯地平降压。", "多喝水，必要时用退烧药。", "需要查血常规，排除肺炎。"]


def test_a_near_miss_is_a_neighbours_answer_never_its_own_or_a_rewording():
    rejected = near_miss_answers(QUESTIONS, ANSWERS, neighbours=1, seed=0)
    # The nearest diabetes question has the same answer, so it is skipped; hypertension is next.
    assert rejected[0] == ANSWERS[2] and rejected[1] == ANSWERS[2]
    assert rejected[3] == ANSWERS[4] and rejected[4] == ANSWERS[3]
    assert all(r != a for r, a in zip(rejected, ANSWERS))


def test_bad_preference_settings_are_refused():
    with pytest.raises(UserError, match="preference_weight"):
        PreferenceArguments(preference_weight=-1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_models import make_tiny_glm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = make_tiny_glm(tmp_path_factory.mktemp("tiny_pref"), [q + a for q, a in zip(QUESTIONS, ANSWERS)] * 20, vocab_size=300)
    return AutoTokenizer.from_pretrained(folder), lambda: AutoModelForCausalLM.from_pretrained(folder)


def _pairs(tokenizer):
    features = []
    for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS)):
        p = tokenizer(q, add_special_tokens=False)["input_ids"]
        good, bad = (tokenizer(x, add_special_tokens=False)["input_ids"] for x in (a, ANSWERS[(i + 2) % len(ANSWERS)]))
        features.append({"input_ids": p + good, "labels": [-100] * len(p) + good,
                         "rejected_input_ids": p + bad, "rejected_labels": [-100] * len(p) + bad})
    return features


def test_without_weight_the_loss_is_the_supervised_loss_of_the_chosen_answers(tiny):
    import torch

    from imdb_llm.llm.sft.answer_loss import answer_only_loss

    tokenizer, load = tiny
    model, features = load(), _pairs(tokenizer)
    batch = PreferenceCollator(tokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape[0] == 2 * len(features) and batch["preference_pairs"] == len(features)
    loss, stats = simpo_loss(model, dict(batch), PreferenceArguments(preference_weight=0.0))
    chosen = PreferenceCollator(tokenizer.pad_token_id)([{k: f[k] for k in ("input_ids", "labels")} for f in features])
    assert "preference_pairs" not in chosen
    assert torch.allclose(loss, answer_only_loss(model, chosen), atol=1e-5) and 0 <= stats["pair_accuracy"] <= 1


def test_training_on_the_preference_term_separates_chosen_from_rejected(tiny):
    import torch

    tokenizer, load = tiny
    model, args = load(), PreferenceArguments(preference_weight=1.0)
    batch = PreferenceCollator(tokenizer.pad_token_id)(_pairs(tokenizer))
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    margins = []
    for _ in range(30):
        loss, stats = simpo_loss(model, dict(batch), args)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        margins.append(stats["margin"])
    assert margins[-1] > margins[0] + 0.5 and stats["pair_accuracy"] == 1.0


def test_the_script_trains_pairs_from_a_trained_adapter(tmp_path):
    import sft_qlora
    from test_qlora import _argv
    from tiny_models import make_tiny_glm

    from imdb_llm.llm.sft.data import load_conversations

    convs, _ = load_conversations(str(FIX / "train.jsonl"))
    model = make_tiny_glm(tmp_path / "glm", [m["content"] for c in convs for m in c["messages"]])
    first, second = tmp_path / "sft", tmp_path / "pref"
    sft_qlora.main(_argv(model, first, "--max_steps", "2", "--load_in_4bit", "false", "--answer_only_logits", "true"))
    metrics = sft_qlora.main(_argv(model, second, "--max_steps", "2", "--load_in_4bit", "false", "--init_adapter", str(first),
                                   "--preference_weight", "1.0", "--answer_only_logits", "true", "--gradient_accumulation_steps", "2"))
    assert metrics["global_step"] == 2
    state = json.loads((second / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "pair_accuracy" in e]
    assert logged and all(0 <= e["pair_accuracy"] <= 1 for e in logged)
    # The loss of two accumulated micro-batches is their mean (supervised + preference term), not their sum.
    assert all(e["nll"] < e["loss"] < 2 * e["nll"] for e in logged)
    # It started from the trained adapter, not from fresh (zero) LoRA B matrices.
    from safetensors.torch import load_file

    start = load_file(str(first / "adapter_model.safetensors"))
    assert any(float(v.abs().sum()) > 0 for k, v in start.items() if "lora_B" in k)
