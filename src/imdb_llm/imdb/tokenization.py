"""A WordPiece tokenizer trained on IMDB text only, saved as a transformers fast tokenizer.

It is BERT-shaped (``[PAD] [UNK] [CLS] [SEP] [MASK]``, lower-cased, ``[CLS] x [SEP]`` template) so
``BertForMaskedLM`` and ``DataCollatorForLanguageModeling`` use it as they would bert-base's; the
GPT track reuses it too, using ``[SEP]`` as end of text and ``[PAD]`` for padding.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 30000, min_frequency: int = 2, lowercase: bool = True):
    """Train WordPiece on ``texts`` and return a ``PreTrainedTokenizerFast`` (BERT conventions)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True, handle_chinese_chars=True, strip_accents=None)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_tokenizer(path: str | os.PathLike):
    """Load a saved tokenizer, with a clear error when the folder is missing."""
    from transformers import AutoTokenizer

    from imdb_llm.cli import UserError

    if not os.path.isdir(path):
        raise UserError(f"{path}: tokenizer folder not found (train one with `make imdb-tokenizer`)")
    return AutoTokenizer.from_pretrained(path)
