"""Pieces of the from-scratch track (scripts/run_scratch.py): model construction from a config,
packed pretraining blocks, a sparse MLM head, and a throughput/time-budget callback."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from imdb_llm.cli import UserError, none_if_off
from imdb_llm.imdb.text import group_texts

MODEL_TYPES = ("bert", "gpt2")


@dataclass
class ScratchModelArguments:
    """The architecture, built from these numbers (no pretrained weights anywhere)."""

    model_type: str = field(default="bert", metadata={"help": "bert (MLM, then BertForSequenceClassification) or gpt2 (causal LM, then GPT2ForSequenceClassification)."})
    tokenizer_name: str = field(default="outputs/imdb-tokenizer", metadata={"help": "IMDB-trained tokenizer folder (`make imdb-tokenizer`)."})
    hidden_size: int = field(default=256, metadata={"help": "Width of the transformer."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Number of transformer blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads per block."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Feed-forward width (default 4 x hidden_size)."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Longest sequence the model can read."})
    dropout: float = field(default=0.1, metadata={"help": "Hidden and attention dropout, both stages."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager | sdpa (PyTorch fused attention; flash kernels on GPU)."})
    sparse_mlm: bool = field(
        default=True,
        metadata={"help": "BERT only: run the vocabulary projection on the ~15%% masked positions only (same loss, less compute)."},
    )
    embedding_init: str | None = field(
        default=None,
        metadata={"help": "Start the token embeddings (tied to the LM output layer) from this (vocabulary x dim) .npy table, e.g. the IMDB "
                          "word2vec of make imdb-word2vec; reduced to hidden_size by PCA when dim differs. none = random."},
    )
    clm_loss_fraction: float = field(
        default=1.0,
        metadata={"help": "GPT-2 only: predict the next token at this random fraction of positions (1 = all). The 30k-word output layer "
                          "costs more than a small model's body; a fraction gives the same expected loss for less compute."},
    )

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise UserError(f"--model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"--hidden_size {self.hidden_size} is not divisible by --num_attention_heads {self.num_attention_heads}")
        if not 0.0 < self.clm_loss_fraction <= 1.0:
            raise UserError(f"--clm_loss_fraction must be in (0, 1], got {self.clm_loss_fraction}")
        self.embedding_init = none_if_off(self.embedding_init)


@dataclass
class ScratchArguments:
    """The two stages: self-supervised pretraining on IMDB text, then classification."""

    # ---- stage 1: pretraining on train + unsupervised text (never validation or test)
    block_size: int = field(default=128, metadata={"help": "Pretraining sequence length; documents are concatenated and cut into blocks."})
    mlm_probability: float = field(default=0.15, metadata={"help": "BERT: fraction of tokens masked."})
    pretrain_max_steps: int = field(default=1000, metadata={"help": "Pretraining optimizer steps (0 = no pretraining, classify from random init)."})
    pretrain_batch_size: int = field(default=64, metadata={"help": "Pretraining blocks per device per step."})
    pretrain_learning_rate: float = field(default=5e-4, metadata={"help": "Peak pretraining learning rate."})
    pretrain_warmup_steps: float = field(default=0.06, metadata={"help": "Warmup steps (a float < 1 is a fraction of the steps)."})
    pretrain_weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay in pretraining."})
    pretrain_lr_scheduler_type: str = field(default="linear", metadata={"help": "Pretraining schedule (linear, cosine, warmup_stable_decay, ...)."})
    pretrain_save_steps: int = field(default=500, metadata={"help": "Checkpoint every N pretraining steps (resume point after a kill)."})
    pretrain_logging_steps: int = field(default=50, metadata={"help": "Log the pretraining loss every N steps."})
    pretrain_max_seconds: float | None = field(
        default=None, metadata={"help": "Safety stop: end pretraining after this many seconds even if steps remain."}
    )
    pretrain_eval_blocks: int = field(default=1000, metadata={"help": "Validation-text blocks for the final pretraining loss/perplexity (0 = skip)."})
    pretrain_only: bool = field(default=False, metadata={"help": "Stop after stage 1 (other runs start from its output_dir/pretrain/final)."})
    pretrained_model: str | None = field(
        default=None, metadata={"help": "Start stage 2 from this finished stage-1 folder (<run>/pretrain/final) instead of pretraining here; "
                                        "its pretraining time counts in this run's train_seconds."})
    # ---- stage 2: classification
    max_seq_length: int = field(default=512, metadata={"help": "Classification context, special tokens included."})
    head_tokens: int = field(default=128, metadata={"help": "Tokens kept from the start of a long review; the rest come from its end (Sun et al. 2019)."})
    classify_torch_compile: bool | None = field(
        default=None, metadata={"help": "torch.compile in stage 2 (default: same as --torch_compile, which stage 1 uses)."}
    )
    teacher: str | None = field(
        default=None, metadata={"help": "Distil from this teacher file (scripts/score_teacher.py): soft targets on train and the unlabelled reviews."})
    distill_alpha: float = field(default=0.5, metadata={"help": "With a teacher: its share of the target on labelled reviews (the gold label has the rest)."})
    distill_temperature: float = field(default=1.0, metadata={"help": "With a teacher: softmax temperature of teacher and student in the loss."})
    distill_unlabelled: bool = field(default=True, metadata={"help": "With a teacher: also learn from the 50,000 unlabelled reviews it scored."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})

    def __post_init__(self):
        # "none" on the command line switches off a stage a config file sets (the ablation targets).
        for name in ("pretrained_model", "teacher"):
            setattr(self, name, none_if_off(getattr(self, name)))
        if self.pretrain_max_steps < 0:
            raise UserError("--pretrain_max_steps must be >= 0")
        if not 0.0 < self.mlm_probability < 1.0:
            raise UserError("--mlm_probability must be in (0, 1)")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise UserError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise UserError(f"--distill_temperature must be positive, got {self.distill_temperature}")
        if self.pretrain_only and self.pretrained_model:
            raise UserError("--pretrain_only and --pretrained_model exclude each other: one run pretrains, the other starts from its output")


def check_arguments(model_args: ScratchModelArguments, scratch_args: ScratchArguments) -> None:
    """What each dataclass cannot check alone (its own checks run in ``__post_init__``): lengths against the model's positions."""
    for name in ("block_size", "max_seq_length"):
        value = getattr(scratch_args, name)
        if not 8 <= value <= model_args.max_position_embeddings:
            raise UserError(f"--{name} {value} must be in [8, max_position_embeddings={model_args.max_position_embeddings}]")


# ------------------------------------------------------------------------------------- models


def build_config(model_args: ScratchModelArguments, tokenizer):
    """A ``BertConfig`` or ``GPT2Config`` sized by the arguments, vocabulary from the tokenizer."""
    from transformers import BertConfig, GPT2Config

    inter = model_args.intermediate_size or 4 * model_args.hidden_size
    if model_args.model_type == "bert":
        return BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=inter,
            max_position_embeddings=model_args.max_position_embeddings,
            hidden_dropout_prob=model_args.dropout,
            attention_probs_dropout_prob=model_args.dropout,
            pad_token_id=tokenizer.pad_token_id,
        )
    # GPT-2 reuses the WordPiece tokenizer: [CLS] opens a review, [SEP] closes it (the end-of-text
    # token between packed documents), [PAD] pads. The classifier reads the last non-pad token,
    # which is always the closing [SEP].
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=model_args.max_position_embeddings,
        n_embd=model_args.hidden_size,
        n_layer=model_args.num_hidden_layers,
        n_head=model_args.num_attention_heads,
        n_inner=inter,
        resid_pdrop=model_args.dropout,
        embd_pdrop=model_args.dropout,
        attn_pdrop=model_args.dropout,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _sparse_mlm_class():
    import torch.nn.functional as F
    from transformers import BertForMaskedLM
    from transformers.modeling_outputs import MaskedLMOutput

    class BertForSparseMaskedLM(BertForMaskedLM):
        """``BertForMaskedLM`` whose vocabulary projection runs on the masked positions only.

        With a 30k vocabulary the output layer costs about as much as a small encoder, yet
        85 %% of its outputs are thrown away by the loss (label -100). Same loss, same weights
        (it saves and loads as plain BERT), fewer FLOPs; RoBERTa-style trainers do the same.
        """

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None):
            hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids)[0]
            if labels is None:
                return MaskedLMOutput(logits=self.cls(hidden))
            selected = labels != -100
            logits = self.cls(hidden[selected])
            loss = F.cross_entropy(logits.float(), labels[selected])
            return MaskedLMOutput(loss=loss, logits=logits)

    return BertForSparseMaskedLM


def _sparse_clm_class():
    import torch
    import torch.nn.functional as F
    from transformers import GPT2LMHeadModel
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    class GPT2ForSparseCausalLM(GPT2LMHeadModel):
        """``GPT2LMHeadModel`` that, in training, predicts the next token at a random
        ``loss_fraction`` of the positions only.

        Every position still attends to all before it, so the body learns as before; the 30k-word
        output layer (three times the body's cost at 256 wide) runs on the sampled positions only.
        The loss is an unbiased estimate of the full one, with more noise. Evaluation (no
        gradient) scores every position, so perplexities compare with the full model's. Same
        weights: it saves and loads as plain GPT-2."""

        loss_fraction = 1.0

        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            if labels is None or not self.training or self.loss_fraction >= 1.0:
                return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
            hidden = self.transformer(input_ids, attention_mask=attention_mask, use_cache=False)[0][:, :-1]
            targets = labels[:, 1:]
            keep = (targets != -100) & (torch.rand(targets.shape, device=targets.device) < self.loss_fraction)
            logits = self.lm_head(hidden[keep])
            loss = F.cross_entropy(logits.float(), targets[keep])
            return CausalLMOutputWithCrossAttentions(loss=loss, logits=logits)

    return GPT2ForSparseCausalLM


def read_word_vectors(path: str, vocab_size: int, hidden_size: int, mmap: bool = False):
    """The (vocabulary x dim) table at ``path``, after checking it fits the tokenizer and the model
    (one-line errors). ``mmap=True`` reads only the header: the start-up check, before any work."""
    import numpy as np

    if not os.path.isfile(path):
        raise UserError(f"--embedding_init {path}: no such file (make imdb-word2vec writes outputs/imdb-word2vec-300.npy)")
    try:
        table = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise UserError(f"--embedding_init {path}: not a .npy table ({exc})") from exc
    if table.ndim != 2 or table.shape[0] != vocab_size:
        raise UserError(f"--embedding_init {path}: shape {table.shape}, expected ({vocab_size}, dim) for the tokenizer's {vocab_size} tokens")
    if table.shape[1] < hidden_size:
        raise UserError(f"--embedding_init {path}: {table.shape[1]} dimensions, fewer than hidden_size {hidden_size}")
    return table


def embedding_table(path: str, vocab_size: int, hidden_size: int, std: float, pad_token_id: int | None):
    """The word-vector table at ``path`` shaped for a transformer's input embeddings.

    Word2vec rows are ~10x larger than a transformer's initial embeddings (std ``initializer_range``);
    position embeddings are added before the LayerNorm, so a table kept at its own scale would drown
    them. Hence: centre, keep the ``hidden_size`` leading principal directions when the table is wider,
    then rescale to ``std``. Rescaling changes no angle; centring and dropping the weakest directions
    change some, but nearest neighbours mostly survive (a test checks them on clustered vectors)."""
    import numpy as np

    table = read_word_vectors(path, vocab_size, hidden_size).astype(np.float64)
    table = table - table.mean(axis=0)
    if table.shape[1] > hidden_size:
        _, _, components = np.linalg.svd(table, full_matrices=False)
        table = table @ components[:hidden_size].T
    table *= std / table.std()
    if pad_token_id is not None:
        table[pad_token_id] = 0.0
    return table.astype(np.float32)


def build_pretraining_model(model_args: ScratchModelArguments, tokenizer):
    """``BertForMaskedLM`` / ``GPT2LMHeadModel``, randomly initialised apart from ``--embedding_init``."""
    from transformers import BertForMaskedLM, GPT2LMHeadModel

    config = build_config(model_args, tokenizer)
    if model_args.model_type == "bert":
        cls = _sparse_mlm_class() if model_args.sparse_mlm else BertForMaskedLM
    else:
        cls = _sparse_clm_class() if model_args.clm_loss_fraction < 1.0 else GPT2LMHeadModel
    model = cls._from_config(config, attn_implementation=model_args.attn_implementation)
    if model_args.model_type == "gpt2" and model_args.clm_loss_fraction < 1.0:
        model.loss_fraction = model_args.clm_loss_fraction
    _init_embeddings(model, model_args, tokenizer)
    return model


def _init_embeddings(model, model_args: ScratchModelArguments, tokenizer) -> None:
    if model_args.embedding_init:
        from imdb_llm.imdb.embeddings import copy_into_embeddings

        table = embedding_table(model_args.embedding_init, len(tokenizer), model_args.hidden_size, model.config.initializer_range, tokenizer.pad_token_id)
        copy_into_embeddings(model, table)  # the LM output layer is tied to it, so it starts there too


def stock_architecture(model_type: str) -> str:
    """What the saved stage-1 model declares itself to be (never our sparse-head subclass)."""
    return "BertForMaskedLM" if model_type == "bert" else "GPT2LMHeadModel"


def build_classifier(model_args: ScratchModelArguments, tokenizer, pretrained_dir: str | None):
    """The classifier, from the pretrained stage-1 weights (or from scratch when there are none)."""
    from transformers import BertForSequenceClassification, GPT2ForSequenceClassification

    cls = BertForSequenceClassification if model_args.model_type == "bert" else GPT2ForSequenceClassification
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    if pretrained_dir:
        model = cls.from_pretrained(pretrained_dir, num_labels=2, attn_implementation=model_args.attn_implementation, **labels)
    else:
        config = build_config(model_args, tokenizer)
        config.num_labels = 2
        config.update(labels)
        model = cls._from_config(config, attn_implementation=model_args.attn_implementation)
        _init_embeddings(model, model_args, tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id  # GPT-2: find the last real token
    return model


# --------------------------------------------------------------------------------------- data


def pack_dataset(texts, tokenizer, block_size: int, num_proc: int | None = None, desc: str = "pretraining text", cache_dir: str | None = None):
    """Text dataset -> dataset of ``input_ids`` blocks. Every document is wrapped as
    ``[CLS] text [SEP]``, so [SEP] marks document ends inside a block. No attention mask: blocks
    have no padding, so attention takes its fast path. The tokenised text is kept in ``cache_dir``
    (imdb_llm.imdb.tokenized_cache); packing it into blocks is quick and is redone each time."""
    from imdb_llm.imdb.tokenized_cache import tokenize_cached

    def tokenize(batch):
        return {"input_ids": tokenizer(batch["text"], add_special_tokens=True, return_attention_mask=False)["input_ids"]}

    tokenized = tokenize_cached(texts, tokenize, tokenizer=tokenizer, cache_dir=cache_dir, settings={"add_special_tokens": True}, name=desc.replace(" ", "-"),
                                remove_columns=texts.column_names, num_proc=num_proc, desc=f"tokenizing {desc}")
    return tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": block_size}, num_proc=num_proc, desc=f"packing {desc} into blocks of {block_size}")


def stack_blocks(rows: list[dict]) -> dict:
    """Collator for ``pack_dataset`` blocks: no padding, so just stack them; the targets are the
    inputs (causal LMs shift them inside)."""
    import torch

    ids = torch.tensor([row["input_ids"] for row in rows], dtype=torch.long)
    return {"input_ids": ids, "labels": ids}


# ---------------------------------------------------------------------------------- callbacks


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class ThroughputCallback(_trainer_callback_base()):
    """Measures this session's optimizer steps and seconds (tokens/s = steps x tokens per step /
    seconds) and stops training after ``max_seconds``. The stop decision is taken on rank 0 and
    broadcast, so every DDP process stops at the same step."""

    def __init__(self, tokens_per_step: int, max_seconds: float | None = None, warmup_steps: int = 20, check_every: int = 10):
        self.tokens_per_step = tokens_per_step
        self.max_seconds = max_seconds
        self.warmup_steps = warmup_steps
        self.check_every = check_every
        self.stopped_by_time = False
        self.start_step = 0
        self.steps = 0
        self.seconds = 0.0
        self._t0 = self._t_warm = None
        self._warm_step = None

    @classmethod
    def for_blocks(cls, block_size: int, training_args, **kwargs) -> "ThroughputCallback":
        """For training on ``pack_dataset`` blocks: a step consumes block_size tokens per sequence of
        the global batch (per-device batch x accumulation x processes)."""
        tokens = block_size * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
        return cls(tokens, **kwargs)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        self.start_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self.start_step
        if done == self.warmup_steps:
            self._t_warm, self._warm_step = time.perf_counter(), state.global_step
        if self.max_seconds is not None and done % self.check_every == 0:
            if _any_rank(time.perf_counter() - self._t0 > self.max_seconds):
                control.should_training_stop = True
                self.stopped_by_time = True

    def on_train_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.steps = state.global_step - self.start_step
        self.seconds = now - self._t0
        self.end_step = state.global_step
        self.steady = None
        if self._t_warm is not None and state.global_step > self._warm_step:
            self.steady = (state.global_step - self._warm_step) * self.tokens_per_step / (now - self._t_warm)

    def metrics(self, prefix: str = "pretrain") -> dict[str, Any]:
        """The figures, named ``<prefix>_<figure>`` (just ``<figure>`` with an empty prefix)."""
        out = {
            "seconds": round(self.seconds, 2),
            "steps_this_session": self.steps,
            "resumed_from_step": self.start_step,
            "tokens": self.steps * self.tokens_per_step,
            "tokens_per_second": round(self.steps * self.tokens_per_step / self.seconds, 1) if self.seconds > 0 else None,
            "stopped_by_time_budget": self.stopped_by_time,
        }
        if self.steady is not None:
            out["tokens_per_second_after_warmup"] = round(self.steady, 1)
        return {f"{prefix}_{k}" if prefix else k: v for k, v in out.items()}


def _any_rank(flag: bool) -> bool:
    """True if the flag is set on rank 0, the same answer on every process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
