"""Helpers for fine-tuning *pretrained* encoders and decoders on IMDB.

Four things the fine-tuning script needs that the plain ``Trainer`` recipe does not give:

* a guard against starting from weights that were already fine-tuned on IMDB (the seed forbids
  it: the test number would not measure fine-tuning at all);
* decoder padding done right: GPT-2/Llama have no pad token (we reuse EOS), and a classifier that
  reads the *last real token* must find it whether the batch is padded on the right or the left;
* in-task further pretraining (ITPT, Sun et al. 2019): MLM or causal LM on IMDB text before
  fine-tuning;
* a padding speed figure measured on the same model and data: dynamic padding with length-grouped
  batches vs padding everything to 512 (the bf16-vs-fp32 figure is imdb_llm.benchmark's).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imdb_llm.benchmark import global_batch, samples_per_second
from imdb_llm.cli import UserError
from imdb_llm.imdb.text import group_texts
from imdb_llm.resume import mark_stage_finished

# Written next to ITPT weights: "these saw IMDB text, but no IMDB labels" (our own stage, allowed).
ITPT_MARKER = "itpt_info.json"
_IMDB_RE = re.compile(r"imdb", re.IGNORECASE)
_CARD_FINETUNED_RE = re.compile(r"fine[- ]?tuned\b[^.\n]{0,120}\bimdb\b", re.IGNORECASE)


# ------------------------------------------------------------------------------ IMDB-weights guard


def _card_text(path: str, hub_id: str | None) -> str | None:
    """The model card: README.md in a local folder, else the hub's cached copy (never downloads)."""
    readme = Path(path) / "README.md"
    if readme.is_file():
        return readme.read_text(encoding="utf-8", errors="replace")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(hub_id, "README.md")
            if isinstance(cached, str) and os.path.isfile(cached):
                return Path(cached).read_text(encoding="utf-8", errors="replace")
        except Exception:  # no cache, odd id: the card check is best effort
            return None
    return None


def _card_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end > 0:
            return card[3:end]
    return ""


def imdb_finetuning_evidence(model_ref: str, path: str, config=None, card: str | None = None) -> list[str]:
    """Reasons to believe these weights were already trained on IMDB (empty list: none found).

    Looks at the id the user typed, the config (``finetuning_task``, ``id2label``,
    ``_name_or_path``) and the model card (front matter: ``datasets``/``model-index``/tags; body:
    "fine-tuned ... IMDB"). Our own ITPT output (marked with ``itpt_info.json``) is exempt from
    the name check: it saw IMDB text without labels, which the recipe allows.
    """
    reasons: list[str] = []
    is_own_itpt = (Path(path) / ITPT_MARKER).is_file()
    if not is_own_itpt and _IMDB_RE.search(model_ref):
        reasons.append(f"its name '{model_ref}' mentions IMDB")
    if config is not None:
        task = getattr(config, "finetuning_task", None)
        if task and _IMDB_RE.search(str(task)):
            reasons.append(f"config.finetuning_task is '{task}'")
        labels = getattr(config, "id2label", None) or {}
        hits = [str(v) for v in labels.values() if _IMDB_RE.search(str(v))]
        if hits:
            reasons.append(f"config.id2label names {hits[0]!r}")
        origin = getattr(config, "_name_or_path", "") or ""
        if origin and not is_own_itpt and origin != model_ref and _IMDB_RE.search(origin) and not Path(origin).is_dir():
            reasons.append(f"config says it came from '{origin}'")
    if card:
        if _IMDB_RE.search(_card_front_matter(card)):
            reasons.append("its model card lists IMDB in its metadata (datasets/model-index/tags)")
        elif _CARD_FINETUNED_RE.search(card):
            reasons.append("its model card says it was fine-tuned on IMDB")
    return reasons


def check_not_imdb_finetuned(model_ref: str, path: str, config=None, *, allow: bool = False, hub_id: str | None = None) -> list[str]:
    """Raise ``UserError`` when the weights look IMDB-fine-tuned, unless ``allow`` (then warn)."""
    card = None if (Path(path) / ITPT_MARKER).is_file() else _card_text(path, hub_id)
    reasons = imdb_finetuning_evidence(model_ref, path, config, card)
    if reasons and not allow:
        raise UserError(
            f"refusing to fine-tune '{model_ref}': it looks already fine-tuned on IMDB ({'; '.join(reasons)}), "
            "so its test accuracy would not measure this recipe; pass --allow_imdb_finetuned_weights true to override"
        )
    for reason in reasons:
        print(f"warning: '{model_ref}' may already be fine-tuned on IMDB ({reason}); continuing because of --allow_imdb_finetuned_weights")
    return reasons


# ------------------------------------------------------------------------------------- models


def is_decoder_only(config) -> bool:
    """True for GPT-2/Llama-style models (a causal LM class exists and no masked-LM class does)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", None)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def setup_padding(tokenizer, model=None, padding_side: str = "right"):
    """Give decoders a pad token (EOS, as GPT-2 has none) and tell the model which id it is.

    Sequence-classification heads on decoders pool the *last non-pad* token, found from
    ``config.pad_token_id``; without it they refuse batches larger than one.
    """
    if padding_side not in ("right", "left"):
        raise UserError(f"--padding_side must be right or left, got {padding_side!r}")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError("the tokenizer has neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def last_token_index(attention_mask):
    """Index of each row's last real token, for right *and* left padding (reference pooling)."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


POOLINGS = ("last", "mean")


def check_pooling(pooling: str, padding_side: str) -> None:
    """The pooling flags on their own (the model is checked by ``set_decoder_pooling``)."""
    if pooling not in POOLINGS:
        raise UserError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "mean" and padding_side != "right":
        raise UserError("--pooling mean needs --padding_side right (left pads would be counted in the mean)")


def set_decoder_pooling(model, pooling: str, padding_side: str = "right"):
    """``last``: the head reads the last real token (what transformers' decoder classifiers ship with).
    ``mean``: it reads the mean of every real position's logits, i.e. the head applied to the mean
    hidden state (the head is linear).

    How: the head runs at every position, and at position t it returns the running mean over
    positions 1..t; the model's own last-real-token selection then picks the mean over the whole
    review. That needs right padding (pads after the text, never counted) and changes no weight
    name, so checkpoints, LoRA and ``load_best_model_at_end`` work unchanged. The choice is kept in
    ``config.classifier_pooling`` and re-applied by ``load_sequence_classifier``."""
    check_pooling(pooling, padding_side)
    if pooling == "last":
        return model
    head = getattr(model, "score", None)
    if not is_decoder_only(model.config) or type(head) not in (torch.nn.Linear, MeanOfPositionsHead):
        raise UserError("--pooling mean is for decoder classifiers with a linear `score` head (encoders read [CLS] through their pooler)")
    head.__class__ = MeanOfPositionsHead
    model.config.classifier_pooling = pooling
    return model


class MeanOfPositionsHead(torch.nn.Linear):
    """A linear head whose output at position t is the mean of its outputs at positions 1..t (float32)."""

    def forward(self, hidden):
        logits = super().forward(hidden).float()
        steps = torch.arange(1, logits.shape[-2] + 1, device=logits.device, dtype=logits.dtype).unsqueeze(-1)
        return logits.cumsum(-2) / steps


@dataclass
class ClassificationCollator:
    """``DataCollatorWithPadding`` plus ``position_ids`` for decoders.

    A left-padded row of a decoder would otherwise start its positions at the pad tokens, so the
    same review would get different position embeddings depending on its batch-mates. Positions
    counted from the first real token make left and right padding give the same logits.
    ``pad_to_max_length`` pads every batch to ``max_length`` (the official example's default).
    """

    tokenizer: Any
    add_position_ids: bool = False
    pad_to_max_length: bool = False
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        features = [{k: v for k, v in f.items() if k != "length"} for f in features]
        batch = self.tokenizer.pad(
            features,
            padding="max_length" if self.pad_to_max_length else True,
            max_length=self.max_length if self.pad_to_max_length else None,
            pad_to_multiple_of=None if self.pad_to_max_length else self.pad_to_multiple_of,
            return_tensors="pt",
        )
        if "label" in batch:
            batch["labels"] = batch.pop("label")
        if self.add_position_ids:
            mask = batch["attention_mask"]
            batch["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return dict(batch)


def from_pretrained_dense(cls, path: str, gguf_file: str | None = None, **kwargs):
    """``cls.from_pretrained`` that always returns a plain, fully trainable float model.

    Recent transformers load GGUF through a quantizer that may keep weights in GGUF blocks (and
    ``Trainer`` refuses to fine-tune a model flagged as quantized); we ask for de-quantised weights
    and then drop the quantizer flag, after checking every weight really is a dense float tensor.
    """
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
        try:
            from transformers import GgufConfig

            kwargs.setdefault("quantization_config", GgufConfig(gguf_file=gguf_file, dequantize=True))
        except ImportError:  # older transformers always de-quantise GGUF on load
            pass
    model = cls.from_pretrained(path, **kwargs)
    if gguf_file or getattr(model, "hf_quantizer", None) is not None:
        packed = [n for n, m in model.named_modules() if "gguf" in type(m).__name__.lower()]
        not_float = [n for n, p in model.named_parameters() if not p.dtype.is_floating_point]
        if packed or not_float:
            raise UserError(f"{path}: weights stayed quantized ({(packed or not_float)[0]}); full fine-tuning needs dense weights")
        if gguf_file:
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
    return model


def load_sequence_classifier(path: str, gguf_file: str | None = None, *, dtype: str = "auto", trust_remote_code: bool = False, **kwargs):
    """``AutoModelForSequenceClassification`` with two labels, from a folder, hub id or GGUF.

    A GGUF checkpoint (``packaged:smollm2``) is de-quantised to float32; the new ``score`` head is
    the only freshly initialised weight. A bare encoder checkpoint (``BertModel``, as MiniLM ships)
    gets a fresh classifier the same way.
    """
    from transformers import AutoModelForSequenceClassification

    extra: dict[str, Any] = dict(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, trust_remote_code=trust_remote_code)
    extra["dtype"] = torch.float32 if (gguf_file or dtype == "auto") else getattr(torch, dtype)
    extra.update(kwargs)
    try:
        model = from_pretrained_dense(AutoModelForSequenceClassification, path, gguf_file, **extra)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot load as a sequence classifier ({str(exc).splitlines()[0]})") from exc
    return set_decoder_pooling(model, getattr(model.config, "classifier_pooling", None) or "last")


def add_lora(model, r: int, alpha: int | None = None, dropout: float = 0.05):
    """LoRA adapters on every linear layer of the body; the new classification head trains in full.

    Why the head trains in full: it starts random, so a low-rank update of a frozen random matrix
    could not learn it. peft's sequence-classification task marks the head (``score`` /
    ``classifier``) as a module to save and train; ``all-linear`` excludes the head from the adapters."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules="all-linear")
    return get_peft_model(model, config)


# ------------------------------------------------------------------------------------------ ITPT


def run_itpt(model_path: str, gguf_file: str | None, tokenizer, texts, training_args, *, block_size: int = 128, mlm_probability: float = 0.15, decoder: bool = False, source: str = ""):
    """In-task further pretraining: MLM (encoders) or causal LM (decoders) on IMDB text.

    Sun et al. (2019) further pre-train bert-base on IMDB train+unsupervised for 100k steps
    (batch 32, length 128) before fine-tuning. Saves the LM and tokenizer into
    ``training_args.output_dir`` with an ``itpt_info.json`` marker, and returns that folder.
    """
    import datasets  # noqa: F401  (texts is a datasets.Dataset)
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer

    cls = AutoModelForCausalLM if decoder else AutoModelForMaskedLM
    try:
        lm = from_pretrained_dense(cls, model_path, gguf_file)
    except (OSError, ValueError) as exc:
        raise UserError(f"{model_path}: cannot load as a {'causal' if decoder else 'masked'} LM for ITPT ({str(exc).splitlines()[0]})") from exc
    if decoder:
        setup_padding(tokenizer, lm)

    def tokenize(batch):
        out = tokenizer(batch["text"], add_special_tokens=not decoder, return_special_tokens_mask=not decoder)
        if decoder and tokenizer.eos_token_id is not None:  # mark review boundaries in the stream
            out["input_ids"] = [ids + [tokenizer.eos_token_id] for ids in out["input_ids"]]
            out["attention_mask"] = [m + [1] for m in out["attention_mask"]]
        return out

    with training_args.main_process_first(desc="ITPT tokenise"):
        tokenised = texts.map(tokenize, batched=True, remove_columns=texts.column_names)
        blocks = tokenised.map(group_texts, batched=True, fn_kwargs={"block_size": block_size})
    if len(blocks) == 0:
        raise UserError(f"ITPT: not enough text for one block of {block_size} tokens")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=not decoder, mlm_probability=mlm_probability)
    trainer = Trainer(model=lm, args=training_args, train_dataset=blocks, data_collator=collator, processing_class=tokenizer)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    out = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        trainer.save_model(str(out))
        info = {
            "objective": "causal_lm" if decoder else "mlm",
            "base_model": source or model_path,
            "data": "IMDB train (minus validation) + unsupervised text, no labels",
            "blocks": len(blocks),
            "block_size": block_size,
            "steps": trainer.state.global_step,
            "train_loss": result.training_loss,
            "train_seconds": round(seconds, 2),
        }
        mark_stage_finished(out, ITPT_MARKER, info)  # written last: the folder is a finished ITPT stage
    trainer.accelerator.wait_for_everyone()
    return str(out)


# ------------------------------------------------------------------------------ padding benchmark


def benchmark_padding(make_model, tokenizer, train_dataset, training_args, *, max_length: int, steps: int, warmup_steps: int = 5, add_position_ids: bool = False) -> dict[str, float]:
    """Training samples/s, same model and data at ``max_length``: dynamic padding + length-grouped
    batches vs padding every batch to ``max_length`` with random batches.

    ``make_model()`` must return a fresh model each call (same initialisation). Nothing is saved.
    """
    out: dict[str, float] = {}
    for name, grouped, pad_max in (("dynamic_grouped", True, False), ("pad_to_max_length", False, True)):
        collator = ClassificationCollator(tokenizer, add_position_ids=add_position_ids, pad_to_max_length=pad_max, max_length=max_length, pad_to_multiple_of=8)
        out[f"bench_{name}_samples_per_second"] = samples_per_second(
            f"padding benchmark: {name}", make_model, train_dataset, training_args, collator, steps=steps, warmup_steps=warmup_steps,
            train_sampling_strategy="group_by_length" if grouped else "random")
    out["bench_speedup_dynamic_vs_pad_to_max"] = round(out["bench_dynamic_grouped_samples_per_second"] / out["bench_pad_to_max_length_samples_per_second"], 3)
    out["bench_max_length"] = max_length
    out["bench_steps"] = steps
    out["bench_batch_size"] = global_batch(training_args)
    return out
