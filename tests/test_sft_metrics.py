"""The readability measures beside ROUGE/BLEU (issue 31): the loop measure on hand-made strings,
distinct-2, empty answers, and how the decoding search picks a winner."""

import pytest

from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.llm.sft.metrics import distinct_n, generation_metrics, has_loop, loop_rate, text_metrics
from imdb_llm.llm.sft.search import choose_decoding, pick


@pytest.mark.parametrize("text, loops", [
    ("需要注意胃肌肉、腹腔、胸部、胸部、胸部、胸部、胸部", True),  # the example
    ("胸部、胸部、胸部", False),       # "胸部、胸" at 0 and 3: twice, not three times
    ("胸部、胸部、胸部、胸", True),     # ... and at 6: three times
    ("aaaaaa", True),                  # overlapping windows count: "aaaa" at 0, 1 and 2
    ("aaaaa", False),                  # "aaaa" only twice
    ("abcdabcdabcd", True),            # "abcd" at 0, 4 and 8
    ("abcdabcdabc", False),            # every window at most twice
    ("abcd efgh abcd efgh abcd", True),  # whitespace is dropped before counting
    ("患者应卧床休息并多喝水，必要时就医。", False),
    ("", False),
    ("   \n\t ", False),
    ("胸部", False),                   # shorter than one window
])
def test_has_loop_on_hand_made_strings(text, loops):
    assert has_loop(text) is loops


def test_loop_rate_is_the_share_of_looping_answers():
    assert loop_rate(["aaaaaa", "abc", "", "abcdabcdabcd"]) == 0.5
    assert loop_rate([]) == 0.0
    assert has_loop("abab", window=2, times=2) and not has_loop("abab", window=2, times=3)


def test_distinct_2_counts_bigrams_over_all_texts():
    # bigrams: (a,b) (b,a) (a,b) | (a,b) -> 2 distinct of 4
    assert distinct_n([list("abab"), list("ab")], 2) == 0.5
    assert distinct_n([list("abc")], 2) == 1.0
    assert distinct_n([[], ["x"]], 2) == 0.0  # no bigram at all: 0, not a division by zero


def test_empty_or_whitespace_answer_is_loop_free_and_scores_zero():
    refs = ["患者应该多喝水休息", "建议进行头颅CT检查。", "头痛"]
    scores = generation_metrics(["", "  \n ", "头痛"], refs, "jieba")
    assert scores["rouge-1"] == scores["rouge-l"] == pytest.approx(100 / 3, abs=0.01)  # 0, 0 and 100
    assert scores["loop_rate"] == 0.0 and 0.0 <= scores["distinct-2"] <= 1.0
    assert generation_metrics([" "], ["头痛"], "char") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0,
                                                           "loop_rate": 0.0, "distinct-2": 0.0}


def test_text_metrics_of_references():
    assert text_metrics(["胸部、胸部、胸部、胸", "多喝水"], "char") == {"loop_rate": 0.5, "distinct-2": round(5 / 11, 4)}


def test_pick_prefers_rouge_within_the_loop_limit_else_the_least_looping():
    rows = [{"rouge-l": 30.0, "loop_rate": 0.20}, {"rouge-l": 25.0, "loop_rate": 0.04}, {"rouge-l": 26.0, "loop_rate": 0.05},
            {"rouge-l": 26.0, "loop_rate": 0.01}]
    assert pick(rows, 0.05) == 3  # 26.0 twice within the limit: the lower loop rate wins
    assert pick(rows[:1] + [{"rouge-l": 10.0, "loop_rate": 0.5}], 0.05) == 0  # none within: least looping
    with pytest.raises(ValueError):
        pick([], 0.05)


def test_choose_decoding_returns_the_winner_as_generation_defaults():
    base = GenerationDefaults(max_new_tokens=32)
    candidates = [base, base.override(repetition_penalty=1.2), base.override(no_repeat_ngram_size=8)]
    refs = ["患者应多喝水休息", "建议头颅CT检查"]
    canned = {1.0: ["患者应多喝水休息休息休息休息休息", "建议头颅CT检查检查检查检查"],  # loops, high overlap
              1.2: ["患者应多喝水", "建议检查"]}

    def answer(settings):
        return canned.get(settings.repetition_penalty) if settings.no_repeat_ngram_size == 0 else ["多喝水", "检查"]

    chosen, table = choose_decoding(answer, candidates, refs, "char", max_loop_rate=0.05)
    assert chosen == candidates[1] and "decoding search on 2" in chosen.source
    assert [row["chosen"] for row in table] == [False, True, False] and table[0]["loop_rate"] == 1.0


def test_repeat_count_is_the_loop_measures_raw_number():
    from imdb_llm.llm.sft.metrics import has_loop, repeat_count

    assert repeat_count("aaaaaa") == 3 and repeat_count("胸部、胸部、胸部、胸部") == 3  # "胸部、胸" at 0, 3, 6
    assert repeat_count("abc") == 0 and repeat_count("  \n ") == 0 and repeat_count("abcd") == 1
    assert all(has_loop(t) == (repeat_count(t) >= 3) for t in ("aaaaaa", "abcdabcd", "胸部、胸部、胸部、胸部", ""))
