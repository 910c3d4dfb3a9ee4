"""Tokens per character and token-budget coverage (imdb_llm.llm.tokenizer_stats, scripts/tokenizer_stats.py),
on the official ChatGLM2 SentencePiece model: real Chinese pieces, byte fallback for what it lacks."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import FIXTURES, PYTHON, REPO
from imdb_llm.llm.tokenizer_stats import budget_stats, chinese_stats, fragment_ids

SP_MODEL = FIXTURES / "chatglm2" / "tokenizer.model"


@pytest.fixture(scope="module")
def glm_tokenizer():
    from imdb_llm.llm.chatglm2.tokenizer import build_fast_tokenizer

    return build_fast_tokenizer(SP_MODEL)


def test_common_chinese_is_whole_pieces_and_a_rare_character_falls_back_to_bytes(glm_tokenizer):
    common = chinese_stats(glm_tokenizer, ["高血压患者应该低盐饮食。"])
    assert common["fragment_token_share"] == 0.0
    assert 0 < common["tokens_per_character"] <= 1.0  # never more tokens than characters for everyday words
    rare = "𪚥"  # a CJK Extension B character: four UTF-8 bytes, no piece of its own
    ids = glm_tokenizer(rare, add_special_tokens=False)["input_ids"]
    assert len(fragment_ids(glm_tokenizer, ids)) >= 1
    stats = chinese_stats(glm_tokenizer, [rare])
    assert stats["fragment_token_share"] > 0.5 and stats["tokens_per_character"] >= 4
    assert stats["characters"] == 1  # the character counts once, whatever its byte length


def test_budget_coverage_counts_the_characters_inside_the_first_tokens(glm_tokenizer):
    short, long = "good film", " ".join(["wonderful acting and a moving story"] * 40)
    stats = budget_stats(glm_tokenizer, [short, long], budget=16)
    n_long = len(glm_tokenizer(long, add_special_tokens=False)["input_ids"])
    assert stats["reviews"] == 2 and stats["over_16_share"] == 0.5
    assert stats["mean_tokens"] == pytest.approx((len(glm_tokenizer(short, add_special_tokens=False)["input_ids"]) + n_long) / 2, abs=0.05)
    # The short review is seen whole; the long one only about 16 / n_long of its characters.
    assert 0.5 < stats["seen_character_share_at_16"] < 0.5 + 0.5 * 2 * 16 / n_long


def test_script_writes_a_result_and_refuses_a_missing_file(tmp_path):
    records = tmp_path / "med.jsonl"
    records.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False)
                                 for q, a in [("头痛怎么办？", "休息，必要时就医。"), ("咳嗽两周了", "建议拍胸片。")]), encoding="utf-8")
    base = [PYTHON, "scripts/tokenizer_stats.py", "--corpus", "med", "--tokenizers", f"glm=sentencepiece:{SP_MODEL}", "--results_dir", str(tmp_path)]
    proc = subprocess.run(base + ["--med_file", str(records)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "tokenization-med-zh.json").read_text(encoding="utf-8"))
    m = result["metrics"]
    assert m["n_records"] == 2 and m["glm_characters"] == m["jieba_characters"] > 0
    assert result["headline"] == "tokenization" and 0 < m["glm_tokens_per_character"] <= 1
    proc = subprocess.run(base + ["--med_file", str(tmp_path / "absent.jsonl"), "--results_name", "absent"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "absent.jsonl: no such file" in proc.stderr
    assert not (tmp_path / "absent.json").exists()
