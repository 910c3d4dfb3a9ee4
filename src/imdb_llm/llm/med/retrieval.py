"""Answers grounded in retrieved knowledge: a BM25 index over the training records, whose nearest
entries go into the prompt at training and at answer time alike.

Why: the BenTsao records were generated from a medical knowledge graph (cMeKG), and HuaTuo's
follow-up, knowledge-tuning (Wang et al., arXiv:2309.04175), retrieves knowledge-base entries for
each question instead of asking a small model to remember them. Here the knowledge base is the
training records themselves. Two rules keep the measurement honest:

* a record never retrieves itself (nor a record with the very same question): at training time the
  model would learn to copy its own answer, which it can never do for a new question;
* the index holds training records only, so a judged (or carved validation) record is never in it.

BM25 is ``bm25s``'s; Chinese has no spaces, so documents and queries are cut into words by jieba.
jieba cuts a rare disease name into common pieces ("胆总管" + "囊肿"), so with ``retrieval_name_weight``
each disease, drug or test name (:class:`~imdb_llm.llm.med.entities.EntityExtractor`) is also counted
whole, as an extra term: a record naming the question's very disease then outranks one sharing its
pieces (a jieba user dictionary instead drops the pieces, and retrieved fewer records about the
question's disease). Answer matching on the 400 carved records moved 0.682 -> 0.688 with weight 1
(results/med-retrieval-names-w1.json): within noise, so the shipped index keeps weight 0.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from imdb_llm.cli import UserError
from imdb_llm.results import atomic_write_text

INDEX_FILE = "retrieval_index.jsonl"  # the records an index was built from, saved beside a model
CONTEXT_HEADER = "参考资料（知识库中相近的问答，可能与本题无关）："
QUESTION_HEADER = "问题："
_PUNCT = set("，。、；：！？,.;:!?（）()“”\"'《》【】[] \n\t")


def words(text: str) -> list[str]:
    """jieba words without punctuation: the units BM25 counts."""
    import jieba

    jieba.setLogLevel(60)
    return [w for w in jieba.lcut(text) if w.strip() and w not in _PUNCT]


@functools.lru_cache(maxsize=1)
def _name_extractor():
    from imdb_llm.llm.med.entities import EntityExtractor

    return EntityExtractor()


def terms(text: str, name_weight: int = 0) -> list[str]:
    """:func:`words`, plus each entity name of ``text`` whole, ``name_weight`` times (marked "#", so a
    name never collides with a word)."""
    if not name_weight:
        return words(text)
    return words(text) + ["#" + name for name in _name_extractor().names(text)] * name_weight


@dataclass
class RetrievalArguments:
    """Knowledge in the prompt: the top-k training records for the question (0 = off)."""

    retrieval_k: int = field(default=0, metadata={"help": "Training records put into the prompt for each question (BM25 on jieba words); 0 = none."})
    retrieval_answer_chars: int = field(default=160, metadata={"help": "Each retrieved answer is cut to this many characters (prompt length)."})
    retrieval_name_weight: int = field(default=0, metadata={"help": "BM25 also counts each disease/drug/test name whole, this many times (0 = words only)."})

    def __post_init__(self):
        if self.retrieval_k < 0 or self.retrieval_answer_chars < 1 or self.retrieval_name_weight < 0:
            raise UserError("--retrieval_k and --retrieval_name_weight must be >= 0 and --retrieval_answer_chars >= 1")


class KnowledgeIndex:
    """BM25 over ``(question, answer)`` records; :meth:`search` never returns excluded rows or rows
    whose question equals the query."""

    def __init__(self, records: Sequence[tuple[str, str]], name_weight: int = 0):
        import bm25s

        if not records:
            raise UserError("the retrieval index needs at least one record")
        self.records = [(str(q), str(a)) for q, a in records]
        self.name_weight = name_weight
        self._bm25 = bm25s.BM25()
        self._bm25.index([terms(q + "。" + a, name_weight) or ["。"] for q, a in self.records], show_progress=False)
        self._vocab = self._bm25.vocab_dict

    def __len__(self) -> int:
        return len(self.records)

    def search(self, question: str, k: int, exclude: Sequence[int] = ()) -> list[int]:
        """Row numbers of the ``k`` best records for ``question``, best first."""
        import numpy as np

        if k <= 0:
            return []
        tokens = [w for w in terms(question, self.name_weight) if w in self._vocab]
        scores = self._bm25.get_scores(tokens).astype("float64") if tokens else np.zeros(len(self.records))
        for row in exclude:
            scores[row] = -np.inf
        for row, (q, _) in enumerate(self.records):
            if q == question:
                scores[row] = -np.inf
        best = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in best if np.isfinite(scores[i])]

    def context(self, question: str, k: int, answer_chars: int, exclude: Sequence[int] = ()) -> str:
        """The user message with the retrieved records before the question (the question alone for k=0)."""
        rows = self.search(question, k, exclude)
        if not rows:
            return question
        lines = [CONTEXT_HEADER]
        for n, row in enumerate(rows, start=1):
            q, a = self.records[row]
            lines.append(f"{n}. 问：{q}\n   答：{a[:answer_chars]}")
        return "\n".join(lines) + f"\n\n{QUESTION_HEADER}{question}"

    # -- saved beside a model, so chat and serving retrieve from the same records, as many ---------
    def save(self, folder: str | Path, args: RetrievalArguments) -> Path:
        """``folder/retrieval_index.jsonl``: a first line with the settings, then one record a line."""
        path = Path(folder) / INDEX_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"retrieval_k": args.retrieval_k, "retrieval_answer_chars": args.retrieval_answer_chars, "retrieval_name_weight": self.name_weight}
        rows = [json.dumps(head)] + [json.dumps({"q": q, "a": a}, ensure_ascii=False) for q, a in self.records]
        atomic_write_text(path, "\n".join(rows) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> tuple["KnowledgeIndex", RetrievalArguments] | None:
        """The index saved beside a model and its settings, or None when the model has none."""
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            return None
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            args = RetrievalArguments(**lines[0])
            return cls([(r["q"], r["a"]) for r in lines[1:]], args.retrieval_name_weight), args
        except (KeyError, TypeError, IndexError) as exc:
            raise UserError(f"{path}: not a retrieval index ({exc})") from exc


def qa_pairs(conversations: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(question, answer)`` of each single-turn conversation (its last two messages)."""
    return [(c["messages"][-2]["content"], c["messages"][-1]["content"]) for c in conversations]


def with_retrieval(conversations: list[dict[str, Any]], index: KnowledgeIndex, args: RetrievalArguments,
                   own_rows: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Copies of ``conversations`` whose question carries the retrieved records. ``own_rows[i]`` is
    conversation i's own row in the index (training records), never retrieved for it."""
    if args.retrieval_k == 0:
        return conversations
    out = []
    for i, conv in enumerate(conversations):
        exclude = [own_rows[i]] if own_rows is not None else []
        messages = [dict(m) for m in conv["messages"]]
        question = messages[-2]["content"]
        messages[-2]["content"] = index.context(question, args.retrieval_k, args.retrieval_answer_chars, exclude)
        out.append({**conv, "messages": messages, "question": question})
    return out
