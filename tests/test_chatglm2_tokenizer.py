"""The native fast tokenizer reproduces the official ChatGLM2 tokenizer (ids and decode) exactly."""

import json
from pathlib import Path

import pytest

from imdb_llm.llm.chatglm2.tokenizer import build_fast_tokenizer, save_tokenizer
from tiny_models import build_prompt

FIX = Path(__file__).parent / "fixtures" / "chatglm2"
VECTORS = [json.loads(line) for line in (FIX / "tokenizer_vectors.jsonl").read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """Built from tokenizer.model, saved, and reloaded the way users load it (AutoTokenizer)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("chatglm2-tok")
    save_tokenizer(build_fast_tokenizer(FIX / "tokenizer.model", model_max_length=32768), out)
    assert not (out / "tokenization_chatglm.py").exists()
    return AutoTokenizer.from_pretrained(out)


def test_all_316_vectors_encode_and_decode_exactly(tokenizer):
    assert len(VECTORS) == 316
    wrong_ids = [v["text"] for v in VECTORS if tokenizer(v["text"])["input_ids"] != v["input_ids"]]
    wrong_text = [v["text"] for v in VECTORS if tokenizer.decode(v["input_ids"], skip_special_tokens=True) != v["decoded"]]
    assert not wrong_ids, f"{len(wrong_ids)} strings tokenised differently, e.g. {wrong_ids[:3]!r}"
    assert not wrong_text, f"{len(wrong_text)} decodes differ, e.g. {wrong_text[:3]!r}"


def test_prefix_ids_and_plain_text_sop(tokenizer):
    ids = tokenizer("sop eop")["input_ids"]
    assert ids[:2] == [64790, 64792]  # [gMASK] sop, prepended like the official tokenizer
    assert 64792 not in ids[2:] and 64793 not in ids  # the words "sop"/"eop" stay text
    assert tokenizer.convert_tokens_to_ids(["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]) == list(range(64789, 64794))
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.padding_side) == (2, 0, "left")


def test_left_padding_matches_official_layout(tokenizer):
    batch = tokenizer(["你好", "hello world, how are you"], padding=True)
    short, long = batch["input_ids"]
    n_pad = len(long) - len(tokenizer("你好")["input_ids"])
    assert short[:n_pad] == [0] * n_pad and batch["attention_mask"][0][:n_pad] == [0] * n_pad
    assert short[n_pad:n_pad + 2] == [64790, 64792]


def test_chat_template_gives_the_official_multi_turn_prompt(tokenizer):
    history = [("hi", "hello!"), ("你是谁？", "我是一个人工智能助手。")]
    messages = []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": "What is 1+1?"})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids == tokenizer(build_prompt("What is 1+1?", history))["input_ids"]
    # ...and the recorded official ids for the two-round prompt of the vectors file.
    two = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}, {"role": "user", "content": "What is 1+1?"}]
    assert tokenizer.apply_chat_template(two, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] == VECTORS[1]["input_ids"]


def test_chat_template_marks_assistant_tokens(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]
    enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tokenizer.decode(answer) == "hello!"
