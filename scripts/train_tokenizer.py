#!/usr/bin/env python
"""Train a WordPiece tokenizer on IMDB train + unsupervised text (never test or validation).

    python scripts/train_tokenizer.py configs/imdb_tokenizer.yaml [--vocab_size 30000]

The result is a transformers fast tokenizer folder (``AutoTokenizer.from_pretrained(dir)``) that
the TextCNN/BiLSTM and the from-scratch BERT/GPT tracks share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb, pretraining_texts
from imdb_llm.imdb.tokenization import train_wordpiece
from imdb_llm.results import atomic_folder


@dataclass
class TokenizerArguments:
    output_dir: str = field(default="outputs/imdb-tokenizer", metadata={"help": "Where the tokenizer folder is written."})
    vocab_size: int = field(default=30000, metadata={"help": "WordPiece vocabulary size (BERT uses 30,522)."})
    min_frequency: int = field(default=2, metadata={"help": "Ignore pieces seen fewer times."})
    lowercase: bool = field(default=True, metadata={"help": "Lower-case before splitting (like bert-base-uncased)."})
    overwrite: bool = field(default=False, metadata={"help": "Retrain even if output_dir already holds a tokenizer."})


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (TokenizerArguments, ImdbArguments)


@run_main
def main(argv=None):
    tok_args, data_args, _config = parse_args(argument_types(), argv)
    if os.path.isfile(os.path.join(tok_args.output_dir, "tokenizer.json")) and not tok_args.overwrite:
        print(f"tokenizer already in {tok_args.output_dir} (pass --overwrite true to retrain)")
        return
    if tok_args.vocab_size < 100:
        raise UserError(f"--vocab_size {tok_args.vocab_size} is too small")

    # Only text a self-supervised stage may see: train (minus the validation carve-out) + unsup.
    dsets = load_imdb(data_args, with_unsupervised=True)
    texts = pretraining_texts(dsets)["text"]
    tokenizer = train_wordpiece(texts, vocab_size=tok_args.vocab_size, min_frequency=tok_args.min_frequency, lowercase=tok_args.lowercase)

    with atomic_folder(tok_args.output_dir) as tmp:  # an interrupted run leaves no half tokenizer
        tokenizer.save_pretrained(tmp)

    sample = "This movie was surprisingly good, although the ending dragged."
    print(f"trained on {len(texts):,} reviews; vocab {len(tokenizer):,}; saved to {tok_args.output_dir}")
    print(f"example: {tokenizer.tokenize(sample)}")


if __name__ == "__main__":
    main()
