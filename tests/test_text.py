"""Head + tail truncation (imdb_llm.imdb.text) on a BERT-style and a GPT-2-style tokenizer."""

import pytest

from imdb_llm.imdb.text import encode_head_tail, head_tail, special_token_wrapping


def test_head_tail_keeps_short_sequences_whole():
    assert head_tail([1, 2, 3], 5, head_tokens=2) == [1, 2, 3]
    assert head_tail([1, 2, 3], 3, head_tokens=2) == [1, 2, 3]


def test_head_tail_takes_head_and_tail():
    ids = list(range(100))
    out = head_tail(ids, 10, head_tokens=3)
    assert out == [0, 1, 2] + list(range(93, 100))
    assert head_tail(ids, 10, head_tokens=10) == list(range(10))  # plain head truncation
    assert head_tail(ids, 10, head_tokens=0) == list(range(90, 100))  # tail only
    assert head_tail(ids, 0) == []


@pytest.fixture(scope="module")
def bert_tok(imdb_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(imdb_tokenizer)


@pytest.fixture(scope="module")
def gpt2_style_tok():
    """A tiny byte-level BPE tokenizer that, like GPT-2's, adds no special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["a great film with a sad ending"] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def test_bert_style_wrapping_and_head_tail(bert_tok):
    prefix, suffix = special_token_wrapping(bert_tok)
    assert prefix == [bert_tok.cls_token_id] and suffix == [bert_tok.sep_token_id]
    long_text = " ".join(f"w{i}" for i in range(400)) + " the ending was terrible"
    short_text = "a good film"
    enc = encode_head_tail(bert_tok, [long_text, short_text], max_length=64, head_tokens=16)
    long_ids, short_ids = enc["input_ids"]
    assert len(long_ids) == 64 and long_ids[0] == bert_tok.cls_token_id and long_ids[-1] == bert_tok.sep_token_id
    body = bert_tok(long_text, add_special_tokens=False)["input_ids"]
    assert long_ids[1:17] == body[:16]  # head
    assert long_ids[17:-1] == body[-(64 - 2 - 16) :]  # tail, ending kept
    assert "terrible" in bert_tok.decode(long_ids)
    # a short text is exactly what the tokenizer itself produces
    assert short_ids == bert_tok(short_text)["input_ids"]
    assert enc["attention_mask"][1] == [1] * len(short_ids)


def test_gpt2_style_tokenizer_and_eos(gpt2_style_tok):
    assert special_token_wrapping(gpt2_style_tok) == ([], [])
    text = "a great film with a sad ending " * 30
    plain = encode_head_tail(gpt2_style_tok, [text], max_length=20, head_tokens=5)["input_ids"][0]
    assert len(plain) == 20 and plain[-1] != gpt2_style_tok.eos_token_id
    with_eos = encode_head_tail(gpt2_style_tok, [text], max_length=20, head_tokens=5, add_eos=True)["input_ids"][0]
    assert len(with_eos) == 20 and with_eos[-1] == gpt2_style_tok.eos_token_id
    body = gpt2_style_tok(text, add_special_tokens=False)["input_ids"]
    assert with_eos[:5] == body[:5] and with_eos[5:-1] == body[-14:]


def test_budget_too_small_is_an_error(bert_tok):
    with pytest.raises(ValueError, match="no room"):
        encode_head_tail(bert_tok, ["x"], max_length=2)
