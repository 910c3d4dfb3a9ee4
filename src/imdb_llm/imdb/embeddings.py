"""Initial word vectors for TextCNN / BiLSTM embedding tables.

Three choices, as in the classic recipes: random (learned from scratch), word2vec trained here on
IMDB text with gensim (Mikolov et al. 2013), or a user-supplied GloVe / word2vec text file. Rows
are indexed by the tokenizer's ids, so the table drops straight into ``nn.Embedding``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from imdb_llm.cli import UserError

logger = logging.getLogger(__name__)


def train_word2vec(
    tokenizer,
    texts: Iterable[str],
    dim: int = 300,
    epochs: int = 5,
    window: int = 5,
    min_count: int = 2,
    seed: int = 42,
    workers: int | None = None,
) -> tuple[np.ndarray, float]:
    """Skip-gram word2vec over the tokenizer's own tokens; returns (table, vocab coverage)."""
    from gensim.models import Word2Vec

    texts = list(texts)
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    # gensim wants string "words": the token id as a string keeps the mapping exact.
    sentences = [[str(i) for i in seq] for seq in ids if seq]
    w2v = Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=window,
        min_count=min_count,
        sg=1,
        negative=5,
        epochs=epochs,
        seed=seed,
        workers=workers or max(1, os.cpu_count() or 1),
    )
    table = _random_table(len(tokenizer), dim, seed)
    hits = 0
    for key in w2v.wv.index_to_key:
        table[int(key)] = w2v.wv[key]
        hits += 1
    if tokenizer.pad_token_id is not None:
        table[tokenizer.pad_token_id] = 0.0
    return table, hits / len(tokenizer)


def load_vectors_file(path: str | os.PathLike, tokenizer, dim: int) -> tuple[np.ndarray, float]:
    """Read GloVe (``word v1 v2 ...``) or word2vec text (same, after an ``N D`` header line).

    Tokens are looked up as the tokenizer spells them (WordPiece continuation pieces like
    ``##ing`` rarely match; whole words do), lower-cased as a fallback.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: vectors file not found")
    vocab = tokenizer.get_vocab()
    table = _random_table(len(tokenizer), dim, 0)
    hits = 0
    with open(path, encoding="utf-8", errors="strict") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) != dim + 1:
                raise UserError(f"{path}:{line_no}: expected a word and {dim} numbers, got {len(parts) - 1} numbers")
            token = parts[0] if parts[0] in vocab else parts[0].lower()
            if token in vocab:
                try:
                    table[vocab[token]] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError as exc:
                    raise UserError(f"{path}:{line_no}: not a number ({exc})") from exc
                hits += 1
    if hits == 0:
        raise UserError(f"{path}: no word of the tokenizer's vocabulary found")
    if tokenizer.pad_token_id is not None:
        table[tokenizer.pad_token_id] = 0.0
    return table, hits / len(tokenizer)


def provenance_path(table_path: str | os.PathLike) -> Path:
    """Where a saved table's provenance (how it was made, in how many seconds) lives: beside it."""
    return Path(str(table_path) + ".json")


def write_provenance(table_path: str | os.PathLike, seconds: float, **fields) -> None:
    from imdb_llm.results import write_json_atomic

    write_json_atomic(provenance_path(table_path), {"seconds": round(seconds, 2), **fields})


def table_provenance(table_path: str | os.PathLike) -> dict:
    """The provenance written beside a table, ``{}`` when there is none (a table from elsewhere)."""
    from imdb_llm.results import read_json

    path = provenance_path(table_path)
    try:
        return read_json(path) or {}
    except ValueError as exc:
        raise UserError(f"{path}: not JSON ({exc})") from exc


def _random_table(rows: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, size=(rows, dim)).astype(np.float32)


def copy_into_embeddings(model, table: np.ndarray, freeze: bool = False) -> None:
    import torch

    emb = model.get_input_embeddings()
    if tuple(emb.weight.shape) != table.shape:
        raise UserError(f"embedding table shape {table.shape} does not match the model's {tuple(emb.weight.shape)}")
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(table))
    emb.weight.requires_grad_(not freeze)
