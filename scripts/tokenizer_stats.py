#!/usr/bin/env python
"""Tokens per character on the Chinese medical records, or how much of an IMDB review fits 512 tokens.

    python scripts/tokenizer_stats.py --corpus med     # make tokenizer-stats: results/tokenization-med-zh.json
    python scripts/tokenizer_stats.py --corpus imdb    #                       results/tokenization-imdb.json

Each ``--tokenizers`` entry is ``label=spec``: a model id, folder or ``packaged:NAME`` (its tokenizer
loads as the model's would), or ``sentencepiece:PATH`` for a ChatGLM2 ``tokenizer.model`` (built by
imdb_llm.llm.chatglm2.tokenizer, which reproduces the official ids). The numbers fill the tables of
docs/chinese-tokenization.md and bert-vs-gpt.md §4 (imdb_llm.llm.tokenizer_stats says what each means).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments, load_imdb
from imdb_llm.llm.tokenizer_stats import budget_stats, chinese_stats, jieba_stats
from imdb_llm.results import ResultArguments, capture_log, write_result

DEFAULT_TOKENIZERS = {
    "med": ["smollm2=packaged:smollm2", "gemma3=packaged:gemma3", "chatglm2=sentencepiece:../shared/data/chatglm2/tokenizer.model"],
    "imdb": ["wordpiece_minilm=packaged:minilm", "bytebpe_smollm2=packaged:smollm2"],
}


@dataclass
class TokenizerStatsArguments:
    corpus: str = field(default="med", metadata={"help": "med: Chinese medical records (tokens per character); imdb: IMDB train reviews (tokens per review)."})
    tokenizers: list[str] = field(default_factory=list, metadata={"help": "label=spec entries; default: the corpus's own list (see DEFAULT_TOKENIZERS)."})
    med_file: str = field(default="data/bentsao_med_zh/train.jsonl", metadata={"help": "The medical records: JSON lines with instruction, input, output."})
    token_budget: int = field(default=512, metadata={"help": "imdb: the context budget whose coverage is measured."})

    def __post_init__(self):
        if self.corpus not in DEFAULT_TOKENIZERS:
            raise UserError(f"--corpus must be one of {', '.join(DEFAULT_TOKENIZERS)}, got {self.corpus!r}")
        self.tokenizers = self.tokenizers or list(DEFAULT_TOKENIZERS[self.corpus])
        for entry in self.tokenizers:
            label, _, spec = entry.partition("=")
            if not label or not spec:
                raise UserError(f"--tokenizers entry {entry!r}: write it as label=spec")
        if self.token_budget < 1:
            raise UserError(f"--token_budget must be at least 1, got {self.token_budget}")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (TokenizerStatsArguments, ImdbArguments, ResultArguments)


def load_any_tokenizer(spec: str):
    if spec.startswith("sentencepiece:"):
        path = Path(spec.split(":", 1)[1])
        if not path.is_file():
            raise UserError(f"{path}: no SentencePiece model there")
        from imdb_llm.llm.chatglm2.tokenizer import build_fast_tokenizer

        return build_fast_tokenizer(path)
    from imdb_llm.llm.loading import load_tokenizer

    return load_tokenizer(spec)


def medical_texts(path: str) -> list[str]:
    """Question and answer of every record, as one text each (what a training example holds)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    texts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            texts.append("\n".join(str(record.get(key) or "") for key in ("instruction", "input", "output")).strip())
        except (json.JSONDecodeError, AttributeError) as exc:
            raise UserError(f"{path}:{number}: not a JSON object ({exc})") from None
    if not texts:
        raise UserError(f"{path}: no records")
    return texts


@run_main
def main(argv=None):
    args, data_args, result_args, config = parse_args(argument_types(), argv)
    result_args.results_name = result_args.results_name or ("tokenization-med-zh" if args.corpus == "med" else "tokenization-imdb")
    started = time.time()
    with capture_log(None) as log:
        if args.corpus == "med":
            texts = medical_texts(args.med_file)
            metrics = {"n_records": len(texts), **{f"jieba_{k}": v for k, v in jieba_stats(texts).items()}}
        else:
            texts = list(load_imdb(data_args)["train"]["text"])  # the train part only: validation and test stay unread
            metrics = {"n_reviews": len(texts), "token_budget": args.token_budget}
        for entry in args.tokenizers:
            label, _, spec = entry.partition("=")
            tokenizer = load_any_tokenizer(spec)
            stats = chinese_stats(tokenizer, texts) if args.corpus == "med" else budget_stats(tokenizer, texts, args.token_budget)
            metrics.update({f"{label}_{key}": value for key, value in stats.items()})
            print(f"{label} ({spec}): " + ", ".join(f"{k} {v}" for k, v in stats.items()), flush=True)
        written = write_result(result_args.results_name, metrics, headline="tokenization", config=config,
                               train_seconds=round(time.time() - started, 2), log_text=log.getvalue(), results_dir=result_args.results_dir)
    print(f"result written to {written}")
    return metrics


if __name__ == "__main__":
    main()
