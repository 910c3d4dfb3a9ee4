"""The arguments of the supervised fine-tuning recipe (:mod:`imdb_llm.llm.sft.recipe`): one dataclass per
concern, as transformers' ``run_glue.py`` splits them, and :class:`Run`, everything one invocation asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imdb_llm.cli import UserError
from imdb_llm.llm.generation import GenerationOverrides
from imdb_llm.llm.med.prepare import MedicalDataArguments
from imdb_llm.llm.sft.data import SftDataArguments
from imdb_llm.llm.sft.search import DecodingSearchArguments
from imdb_llm.results import ResultArguments


@dataclass
class ModelArguments:
    """The base model, how it is quantised, and what is trained (LoRA matrices or every weight)."""

    model_name_or_path: str = field(
        default="packaged:smollm2",
        metadata={"help": "Local folder, hub id, .gguf, or packaged:smollm2. ChatGLM2 must be the native (GlmForCausalLM) conversion."},
    )
    finetuning: str = field(default="lora", metadata={"help": "lora (trainable low-rank matrices on a frozen base) or full (every weight)."})
    load_in_4bit: bool = field(
        default=True,
        metadata={"help": "Load the frozen base in 4-bit NF4 + double quantisation (QLoRA). false = plain LoRA on full-precision "
                  "weights (fp32 on a CPU, bf16 on a GPU with --mixed_precision bf16): faster on a CPU."},
    )
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a GPU that has it or a CPU with native bf16, else fp16 on a GPU, fp32 on a CPU), bf16, fp16 or no."},
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa, eager or flash_attention_2."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "'all-linear' (every linear layer but the LM head) or a comma list."})
    init_adapter: str = field(default="", metadata={"help": "LoRA: start from this trained adapter folder instead of fresh matrices."})
    cache_dir: str = field(default="outputs/cache", metadata={"help": "Where a GGUF base is de-quantised once so it can be loaded in 4-bit and trained."})

    def __post_init__(self):
        if self.finetuning not in ("lora", "full"):
            raise UserError(f"--finetuning must be lora or full, got {self.finetuning!r}")
        if self.finetuning == "full" and self.load_in_4bit:
            raise UserError("--finetuning full trains every weight, which 4-bit weights cannot be: add --load_in_4bit false")
        if self.lora_r < 1:
            raise UserError("--lora_r must be >= 1")


@dataclass
class GenerationEvalArguments:
    """The final judging: ROUGE/BLEU, loop rate and distinct-2 of base and tuned answers."""

    generate_eval_samples: int = field(
        default=0,
        metadata={"help": "Judge this many (seeded) records at the end: of validation_file with --carve_validation, else of the "
                  "records the loss is measured on (as before); 0 = skip."},
    )
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    metric_tokens: str = field(default="jieba", metadata={"help": "ROUGE/BLEU/distinct-2 units for Chinese: jieba (words) or char."})
    answers_cache_dir: str = field(
        default="outputs/cache/answers",
        metadata={"help": "Keep answers here, keyed by model weights, prompts and settings, so a rerun does not generate them "
                  "again; empty = no cache."},
    )

    def __post_init__(self):
        if self.metric_tokens not in ("jieba", "char"):
            raise UserError("--metric_tokens must be jieba or char")
        if self.generate_eval_samples < 0 or self.generation_batch_size < 1:
            raise UserError("--generate_eval_samples must be >= 0 and --generation_batch_size >= 1")


def argument_types():
    """The argument dataclasses a config file for this script fills (tests/test_configs.py checks every config)."""
    from transformers import TrainingArguments

    return (ModelArguments, SftDataArguments, GenerationEvalArguments, GenerationOverrides, DecodingSearchArguments, TrainingArguments,
            ResultArguments, MedicalDataArguments)


@dataclass
class Run:
    """Everything one invocation was asked to do, parsed."""

    model: ModelArguments
    data: SftDataArguments
    gen: GenerationEvalArguments
    overrides: GenerationOverrides
    search: DecodingSearchArguments
    training: Any
    result: ResultArguments
    med: MedicalDataArguments
    config: dict
