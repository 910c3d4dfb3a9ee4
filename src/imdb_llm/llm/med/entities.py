"""Invented entities: the share of disease, drug and test names in answers that appear neither in the
question nor anywhere in the training records (issue 48).

A small model that learned the style of medical answers writes names that sound right -
"胆道张力低下综合征" - and are in no textbook and no record it saw. ROUGE rewards their characters;
this measure counts them. The references get the same count, which gives the scale: a judged
reference may name a disease no training record names, and that is knowledge, not invention.

How names are found: jieba cuts the text into words (with a user dictionary of the names found in
the training records, so a known name stays one piece); a name is the run of words that ends in a
disease, drug or test suffix (炎, 癌, 综合征; 素, 沙星, 胶囊; 检查, 造影, ...), stopped by the verbs and
function words around it ("可能患有", "进行", "的"). The extractor is a heuristic, used alike on answers,
references and training records, so the rates compare even where it cuts a name wrongly.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

SUFFIXES = {
    "disease": ("综合征", "综合症", "白血病", "中毒", "感染", "骨折", "畸形", "梗死", "梗塞", "衰竭", "硬化", "结石", "溃疡", "囊肿", "息肉",
                "狭窄", "积液", "脓肿", "肥大", "增生", "麻痹", "结核", "贫血", "病", "症", "炎", "癌", "瘤", "疝", "瘘"),
    "drug": ("霉素", "西林", "沙星", "普利", "沙坦", "地平", "他汀", "洛尔", "卡因", "注射液", "胶囊", "颗粒", "口服液", "素", "唑", "胺",
             "酮", "钠", "钾", "片", "丸", "膏", "嗪", "芬", "肽", "碱", "松", "匹林"),
    "test": ("检查", "造影", "扫描", "活检", "穿刺", "测定", "试验", "超声", "心电图", "内镜", "摄片", "平片", "检测", "化验", "CT", "MRI"),
}
_ALL_SUFFIXES = sorted({s for group in SUFFIXES.values() for s in group}, key=len, reverse=True)
STOP_WORDS = set(
    "可能 患有 出现 进行 需要 使用 采用 包括 应该 可以 建议 给予 诊断 诊断为 考虑 考虑为 是 为 的 了 有 该 患者 病人 如 例如 比如 服用 口服 "
    "治疗 同时 还要 注意 并 并发 引起 导致 所致 合并 伴有 常见 主要 一般 通常 首选 应用 用 做 行 接受 确诊 排除 预防 控制 其他 以及 可 需 应 "
    "或者 或 和 等 及 与 对 在 后 前 时 中 其 此 这 那 本 我 你 他 她 它 会 将 被 把 从 向 以 由 于 至 到 及时 尽快 定期 相关 必要 方面 "
    "如果 若 假如 患上 无法 通过 增加 减少 给 可用 选用 改用 加用 联合 配合 针对 对于 由于 因为 所以 但 但是 而 来 紧急 采取 密切 监测 清除 避免 再次 保持 表现 表现为 伴 确定 确认 明确 评估 发生 存在 造成 "
    "属于 称为 即 就 也 都 还 又 再 很 较 更 最 不 无 未 非 没有 是否 哪些 什么 如何 怎样 多 少 一些 各种 一种 一个 相应 适当 积极".split())
_SPLIT = re.compile(r"[，。、；：！？,.;:!?（）()“”\"'\s\-—~/和与或及等]+")
MIN_NAME_CHARS = 3


def _suffix_of(word: str) -> str | None:
    return next((s for s in _ALL_SUFFIXES if word.endswith(s)), None)


class EntityExtractor:
    """Disease, drug and test names in Chinese text, with jieba and a user dictionary."""

    def __init__(self, user_words: Iterable[str] = ()):
        import jieba

        jieba.setLogLevel(60)
        self._jieba = jieba.Tokenizer()
        for word in user_words:
            self._jieba.add_word(word, freq=20000)

    def names(self, text: str) -> list[str]:
        """Each name once, in order of first mention."""
        found: list[str] = []
        for segment in _SPLIT.split(text):
            if not segment:
                continue
            words = self._jieba.lcut(segment, HMM=False)
            start = 0
            for i, word in enumerate(words):
                if word in STOP_WORDS:
                    start = i + 1
                    continue
                if _suffix_of(word) and (i + 1 == len(words) or not _suffix_of(words[i + 1]) or words[i + 1] in STOP_WORDS):
                    name = "".join(words[start:i + 1])
                    if len(name) >= MIN_NAME_CHARS and name not in found and name not in _ALL_SUFFIXES:
                        found.append(name)
                    start = i + 1
        return found


def build_lexicon(texts: Sequence[str]) -> set[str]:
    """Every name the plain extractor finds in ``texts`` (the training records)."""
    plain = EntityExtractor()
    return {name for text in texts for name in plain.names(text)}


class InventionCounter:
    """Counts names in answers that the question and the training records never mention."""

    def __init__(self, training_texts: Sequence[str]):
        self.lexicon = build_lexicon(training_texts)
        self.extractor = EntityExtractor(self.lexicon)
        self._corpus = "\n".join(training_texts)

    def invented(self, question: str, answer: str) -> tuple[list[str], list[str]]:
        """``(names, invented names)`` of one answer."""
        names = self.extractor.names(answer)
        return names, [n for n in names if n not in self.lexicon and n not in question and n not in self._corpus]

    def rate(self, questions: Sequence[str], answers: Sequence[str]) -> dict:
        """Invented names / all names over every answer, the share of answers with one or more, and
        the most frequent invented names (what a reader should look at)."""
        from collections import Counter

        total, invented, answers_with = 0, Counter(), 0
        for question, answer in zip(questions, answers):
            names, new = self.invented(question, answer)
            total += len(names)
            invented.update(new)
            answers_with += bool(new)
        n_invented = sum(invented.values())
        return {"invented_entity_rate": round(n_invented / total, 4) if total else 0.0, "entity_mentions": total,
                "answers_with_invented_entity": round(answers_with / len(answers), 4) if answers else 0.0,
                "top_invented": invented.most_common(10)}
