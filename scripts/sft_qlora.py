#!/usr/bin/env python
"""Supervised fine-tuning of a chat model (ChatGLM2-6B, SmolLM2, ...) on instruction data: QLoRA,
LoRA on full-precision weights, or full fine-tuning; then a decoding search and a final judging.

QLoRA (Dettmers et al. 2023) = the frozen base model stored in 4-bit NF4 with double quantisation,
computed in bf16, plus small trainable LoRA matrices on every linear layer, gradient
checkpointing and a paged 8-bit AdamW. A 6B model then trains in ~10 GiB.

On a CPU, 4-bit weights are slower than full precision and save nothing that matters for a small
model: ``--load_in_4bit false`` trains plain LoRA on fp32 weights, computed in bf16 autocast where
the CPU has native bf16 (``--mixed_precision auto``; 2.3x fp32 for SmolLM2 on a 2-core EPYC), and
``--finetuning full`` trains every weight the same way.

Held-out data, kept apart (``--carve_validation``): a seeded part of the *training* file is the
validation set for the loss, the checkpoint chosen (``load_best_model_at_end``) and the decoding
search (``--decoding_candidates``, :mod:`imdb_llm.llm.sft.search`); ``validation_file`` is judged once,
at the end, base and tuned model with the same chosen settings, which become the model's
generation defaults (``generation_defaults.json`` in ``output_dir``, read by eval, chat and serve).

    python scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml

Shaped like transformers' examples/pytorch/text-classification/run_classification.py: arguments
are dataclasses, main() reads top to bottom. Data handling lives in ``imdb_llm.llm.sft``.
"""

from __future__ import annotations

from imdb_llm.cli import parse_args, run_main
from imdb_llm.llm.sft.arguments import Run, argument_types
from imdb_llm.llm.sft.recipe import run_sft
from imdb_llm.results import capture_log

__all__ = ["argument_types", "main"]


@run_main
def main(argv=None, extra_callbacks=None):
    run = Run(*parse_args(argument_types(), argv))
    with capture_log(None) as log:
        return run_sft(run, log, extra_callbacks)


if __name__ == "__main__":
    main()
