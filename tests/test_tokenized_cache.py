"""Tokenised splits are read back from disk on a rerun, and never when rows, tokenizer, settings or code differ."""

import datasets
import pytest
from transformers import AutoTokenizer

from imdb_llm.imdb.tokenized_cache import resolve_cache_dir, tokenize_cached


@pytest.fixture
def tokenizer(imdb_tokenizer):
    return AutoTokenizer.from_pretrained(imdb_tokenizer)


def _rows(texts):
    return datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})


def test_a_rerun_reads_the_cache_and_changes_write_new_files(tokenizer, tmp_path, capsys):
    calls = []

    def encode(batch, max_length=8):
        calls.append(len(batch["text"]))
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    rows = _rows(["a fine film", "a dull film, far too long", "loved it"])
    first = tokenize_cached(rows, encode, tokenizer=tokenizer, cache_dir=tmp_path, settings={"max_length": 8}, name="train", remove_columns=["text"])
    assert calls and len(list(tmp_path.glob("train-*.arrow"))) == 1
    calls.clear()
    again = tokenize_cached(_rows(["a fine film", "a dull film, far too long", "loved it"]), encode, tokenizer=tokenizer, cache_dir=tmp_path,
                            settings={"max_length": 8}, name="train", remove_columns=["text"])
    assert calls == [] and again["input_ids"] == first["input_ids"] and again["label"] == first["label"]
    assert "tokenised train from the cache" in capsys.readouterr().out

    # other rows, other settings, another tokenizer: each a new file, computed afresh
    tokenize_cached(_rows(["a fine film", "hated it"]), encode, tokenizer=tokenizer, cache_dir=tmp_path, settings={"max_length": 8}, name="train")
    tokenize_cached(rows, encode, tokenizer=tokenizer, cache_dir=tmp_path, settings={"max_length": 4}, name="train")
    other = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    other.add_tokens(["filmgoer"])
    tokenize_cached(rows, encode, tokenizer=other, cache_dir=tmp_path, settings={"max_length": 8}, name="train")
    assert len(list(tmp_path.glob("train-*.arrow"))) == 4


def test_changed_encoding_code_is_not_served_from_the_cache(tokenizer, tmp_path):
    rows = _rows(["a fine film", "loved it"])

    def head(texts):
        return tokenizer(texts, truncation=True, max_length=3)

    def encode(batch):
        return head(batch["text"])

    tokenize_cached(rows, encode, tokenizer=tokenizer, cache_dir=tmp_path, settings={}, code=[head], name="x")

    def head(texts):  # noqa: F811  (the same name, new code: a bug fix, say)
        return tokenizer(texts, truncation=True, max_length=4)

    fresh = tokenize_cached(rows, encode, tokenizer=tokenizer, cache_dir=tmp_path, settings={}, code=[head], name="x")
    assert max(len(ids) for ids in fresh["input_ids"]) == 4 and len(list(tmp_path.glob("x-*.arrow"))) == 2


def test_cache_dir_setting(tmp_path):
    assert resolve_cache_dir(None, tmp_path / "outputs" / "imdb-lstm") == str((tmp_path / "outputs" / "cache" / "tokenized").resolve())
    assert resolve_cache_dir("none", tmp_path) is None and resolve_cache_dir(str(tmp_path / "c"), tmp_path) == str(tmp_path / "c")
