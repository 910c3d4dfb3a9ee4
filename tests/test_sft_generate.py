"""Evaluation of chat answers: batched generation (with and without repetition control), the answer
cache, ROUGE/BLEU on Chinese."""

import os
import time
from pathlib import Path

import pytest

from imdb_llm.llm.sft import generate as gen
from imdb_llm.llm.sft.data import load_conversations
from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.llm.sft.metrics import generation_metrics
from tiny_models import make_tiny_glm

FIX = Path(__file__).parent / "fixtures" / "sft"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    convs, _ = load_conversations(str(FIX / "train.jsonl"))
    folder = make_tiny_glm(tmp_path_factory.mktemp("tinyglm"), [m["content"] for c in convs for m in c["messages"]])
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), convs, folder


def test_batched_greedy_answers_equal_one_by_one(tiny):
    model, tok, convs, _ = tiny
    sample = convs[:6]
    lengths = {len(gen.render_prompt(tok, c["messages"][:-1])) for c in sample}
    assert len(lengths) > 1  # prompts of different lengths: left padding is exercised
    settings = GenerationDefaults(max_new_tokens=12)
    batched = gen.generate_answers(model, tok, sample, settings, batch_size=4, progress=False)
    alone = [gen.generate_answers(model, tok, [c], settings, batch_size=1, progress=False)[0] for c in sample]
    assert batched == alone
    assert any(batched)  # the random model does say something


def test_repetition_controls_act_on_the_answer_and_keep_batching_exact(tiny):
    """The controls see only the answer (not the prompt, not the left padding), so a batch still
    decodes each prompt as it would alone; and they do change what a looping model says."""
    model, tok, convs, _ = tiny
    sample = convs[:6]
    controlled = GenerationDefaults(max_new_tokens=24, repetition_penalty=1.3, no_repeat_ngram_size=2)
    batched = gen.generate_answers(model, tok, sample, controlled, batch_size=4, progress=False)
    alone = [gen.generate_answers(model, tok, [c], controlled, batch_size=1, progress=False)[0] for c in sample]
    plain = gen.generate_answers(model, tok, sample, GenerationDefaults(max_new_tokens=24), batch_size=4, progress=False)
    assert batched == alone and batched != plain
    for c in sample:  # no token bigram of the answer repeats
        prompt = tok(gen.render_prompt(tok, c["messages"][:-1]), return_tensors="pt", add_special_tokens=False)
        out = model.generate(**prompt, **controlled.generate_kwargs(prompt["input_ids"].shape[1]), pad_token_id=tok.pad_token_id)
        answer = out[0, prompt["input_ids"].shape[1]:].tolist()
        bigrams = list(zip(answer, answer[1:]))
        assert len(bigrams) == len(set(bigrams))


def test_base_answers_cached_and_invalidated_by_data(tiny, tmp_path, monkeypatch):
    model, tok, convs, folder = tiny
    calls = []
    real = gen.generate_answers

    def counting(*args, **kw):
        calls.append(len(args[2]))
        return real(*args, **kw)

    monkeypatch.setattr(gen, "generate_answers", counting)
    model_id = gen.model_fingerprint(folder)
    short = GenerationDefaults(max_new_tokens=8)
    first, hit1 = gen.cached_answers(tmp_path, model_id, model, tok, convs[:3], short, 4)
    again, hit2 = gen.cached_answers(tmp_path, model_id, model, tok, convs[:3], short, 4)
    assert (hit1, hit2) == (False, True) and again == first and calls == [3]
    changed = [dict(convs[0], messages=[{"role": "user", "content": convs[0]["messages"][0]["content"] + "？"}, convs[0]["messages"][-1]])] + convs[1:3]
    _, hit3 = gen.cached_answers(tmp_path, model_id, model, tok, changed, short, 4)
    _, hit4 = gen.cached_answers(tmp_path, model_id, model, tok, convs[:3], GenerationDefaults(max_new_tokens=16), 4)  # other settings, other key
    _, hit5 = gen.cached_answers(tmp_path, model_id, model, tok, convs[:3], short.override(repetition_penalty=1.2), 4)
    assert (hit3, hit4, hit5) == (False, False, False) and calls == [3, 3, 3, 3]
    stamp = time.time() + 5  # the model folder changed: its fingerprint changes too
    os.utime(Path(folder) / "config.json", (stamp, stamp))
    assert gen.model_fingerprint(folder) != model_id


def test_rouge_bleu_on_a_hand_checked_pair():
    # characters: hyp 患者应多喝水休息 (8), ref 患者应该多喝水休息 (9)
    # ROUGE-1: 8 shared, P 8/8, R 8/9 -> F 16/17 = 94.12; ROUGE-L: LCS 8 -> the same;
    # ROUGE-2: 6 of 7 hyp bigrams in the 8 ref bigrams -> F 2*(6/7)(6/8)/((6/7)+(6/8)) = 80.00;
    # BLEU-4: precisions 8/8, 6/7, 4/6, 2/5, brevity exp(1 - 9/8) -> 61.02.
    # distinct-2: the 7 character bigrams of the answer are all different -> 1.0; no loop.
    scores = generation_metrics(["患者应多喝水休息"], ["患者应该多喝水休息"], "char")
    assert scores == {"rouge-1": 94.12, "rouge-2": 80.0, "rouge-l": 94.12, "bleu-4": 61.02, "loop_rate": 0.0, "distinct-2": 1.0}


def test_empty_answer_scores_zero_instead_of_raising():
    scores = generation_metrics(["", "头痛"], ["患者应该多喝水休息", "头痛"], "jieba")
    assert scores["rouge-1"] == 50.0 and scores["rouge-l"] == 50.0  # 0 for the empty one, 100 for the exact one
