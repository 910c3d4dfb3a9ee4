"""SFT data layer: record forms, bad-data errors and reported skips, answer-only labels, packing,
Chinese ROUGE/BLEU. No training here (see test_qlora.py)."""

import json
import re
from pathlib import Path

import pytest
import torch

from imdb_llm.cli import UserError
from imdb_llm.llm.sft.collate import PackingCollator, PadCollator
from imdb_llm.llm.sft.data import load_conversations, record_to_messages
from imdb_llm.llm.sft.loss import chunked_lm_loss
from imdb_llm.llm.sft.metrics import generation_metrics
from imdb_llm.llm.sft.template import IGNORE_INDEX, choose_max_length, encode_conversation, encode_dataset
from tiny_models import make_tiny_glm

FIX = Path(__file__).parent / "fixtures" / "sft"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_glm(tmp_path_factory):
    convs, _ = load_conversations(str(FIX / "train.jsonl"))
    texts = [m["content"] for c in convs for m in c["messages"]]
    return make_tiny_glm(tmp_path_factory.mktemp("tinyglm"), texts)


@pytest.fixture(scope="module")
def tokenizer(tiny_glm):
    from imdb_llm.llm.loading import load_tokenizer

    return load_tokenizer(tiny_glm)


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return str(path)


def test_all_record_forms_give_the_same_messages():
    alpaca = record_to_messages({"instruction": "头痛怎么办？", "input": "", "output": "休息。"}, "x:1")
    sharegpt = record_to_messages({"conversations": [{"from": "human", "value": "头痛怎么办？"}, {"from": "gpt", "value": "休息。"}]}, "x:2")
    messages = record_to_messages({"messages": [{"role": "user", "content": "头痛怎么办？"}, {"role": "assistant", "content": "休息。"}]}, "x:3")
    assert alpaca == sharegpt == messages == [{"role": "user", "content": "头痛怎么办？"}, {"role": "assistant", "content": "休息。"}]
    with_input = record_to_messages({"instruction": "翻译", "input": "fever", "output": "发烧"}, "x:4")
    assert with_input[0]["content"] == "翻译\nfever"


def test_shipped_medical_data_loads_completely():
    convs, report = load_conversations(str(REPO / "data" / "bentsao_med_zh" / "validation.jsonl"))
    assert report.read == report.kept == len(convs) == 500
    assert not report.skipped


@pytest.mark.parametrize(
    "record, message",
    [
        ({"instruction": "头痛？"}, "missing field(s) output"),
        ({"question": "头痛？", "answer": "休息"}, "missing field(s) instruction, output"),
        ({"instruction": 3, "output": "休息"}, "'instruction' must be a string"),
        ({"messages": [{"role": "user", "content": "头痛？"}]}, "last turn must be the assistant"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path, record, message):
    path = _write(tmp_path / "bad.jsonl", [{"instruction": "好", "output": "好"}, record])
    with pytest.raises(UserError, match=r"bad.jsonl:2: .*" + re.escape(message)):
        load_conversations(path)


def test_non_utf8_and_broken_json_are_errors(tmp_path):
    bad = tmp_path / "gbk.jsonl"
    bad.write_bytes(json.dumps({"instruction": "a", "output": "b"}).encode() + b"\n" + '{"instruction": "头痛", "output": "休息"}'.encode("gbk") + b"\n")
    with pytest.raises(UserError, match=r"gbk.jsonl:2: not valid UTF-8"):
        load_conversations(str(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a",\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"broken.jsonl:2: not valid JSON"):
        load_conversations(str(broken))


def test_empty_answers_and_overlong_samples_are_reported_skips(tmp_path, tokenizer):
    rows = [{"instruction": "头痛怎么办？", "output": "多休息。"}, {"instruction": "发烧？", "output": "  "},
            {"instruction": "咳嗽？", "output": "多喝水。" * 50}]
    convs, report = load_conversations(_write(tmp_path / "d.jsonl", rows))
    assert report.skipped == {"empty answer": [2]} and len(convs) == 2
    kept = encode_dataset(tokenizer, convs, report, max_length=60)
    assert len(kept) == 1 and report.kept == 1
    assert report.skipped["longer than max_length=60 tokens"] == [3]
    assert "skipped 1 (empty answer; records 2)" in report.describe()


def test_only_answer_tokens_and_eos_are_labelled(tokenizer):
    msgs = [{"role": "user", "content": "头痛怎么办？"}, {"role": "assistant", "content": "多休息，多喝水。"}]
    enc = encode_conversation(tokenizer, msgs)
    labelled = [t for t, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE_INDEX]
    assert labelled[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(labelled, skip_special_tokens=True) == "多休息，多喝水。"
    prompt = tokenizer.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l == IGNORE_INDEX])
    assert prompt == "[Round 1]\n\n问：头痛怎么办？\n\n答："  # ChatGLM2's format, from the chat template
    # labels are aligned with input ids: every labelled position holds its own token
    assert all(l in (IGNORE_INDEX, t) for t, l in zip(enc["input_ids"], enc["labels"]))


def test_max_length_from_the_data():
    lengths = list(range(1, 101))
    assert choose_max_length(lengths, 99) == 104  # p99 = 99.01 -> rounded up to a multiple of 8
    assert choose_max_length(lengths, 50, cap=32) == 32


def test_packing_has_no_cross_sample_attention(tiny_glm, tokenizer):
    """The packed row's loss equals the loss of the same samples run separately."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_glm, dtype=torch.float32, attn_implementation="sdpa").eval()
    model.config.use_cache = False  # with a KV cache transformers does not look for packed sequences
    convs, _ = load_conversations(str(FIX / "validation.jsonl"))
    feats = [encode_conversation(tokenizer, c["messages"]) for c in convs[:3]]
    with torch.no_grad():
        packed = PackingCollator()(feats)
        logits_packed = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        offset = 0
        for f in feats:
            n = len(f["input_ids"])
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits[0]
            torch.testing.assert_close(logits_packed[offset:offset + n], alone, atol=1e-4, rtol=1e-4)
            offset += n
        padded = PadCollator(tokenizer.pad_token_id)(feats)
        loss_pad = model(**padded).loss
        loss_packed = model(**packed).loss
    torch.testing.assert_close(loss_pad, loss_packed, atol=1e-4, rtol=1e-4)


def test_chunked_loss_matches_full_cross_entropy():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9))
    labels[0, :4] = IGNORE_INDEX
    full = torch.nn.functional.cross_entropy(head(hidden)[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    (g_full,) = torch.autograd.grad(full, hidden)
    chunked = chunked_lm_loss(hidden, head, labels, chunk_tokens=5)
    (g_chunk,) = torch.autograd.grad(chunked, hidden)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(g_chunk, g_full)


def test_chinese_generation_metrics():
    refs = ["患者应卧床休息并多喝水。", "建议进行头颅CT检查。"]
    perfect = generation_metrics(refs, refs, "char")
    assert perfect["rouge-1"] == perfect["rouge-2"] == perfect["rouge-l"] == 100.0 and perfect["bleu-4"] == 100.0
    none = generation_metrics(["", "abc"], refs, "jieba")
    assert none["rouge-1"] == none["rouge-l"] == none["bleu-4"] == 0.0
    partial = generation_metrics(["患者应多喝水。", "建议头颅CT。"], refs, "char")
    assert 0 < partial["rouge-2"] < partial["rouge-1"] < 100
