"""Supervised fine-tuning (SFT) plumbing shared by ``sft_qlora.py``, ``eval_chat.py``,
``merge_adapter.py`` and ``bench_qlora.py``.

The pieces, in the order a run uses them:

1. :func:`load_conversations` reads alpaca (``instruction``/``input``/``output``), sharegpt
   (``conversations``) or ``messages`` records from JSONL/JSON or a hub id and turns every record
   into a list of chat messages. Broken records are *errors* (file:line, what is wrong); records
   that are well-formed but unusable (empty answer, longer than ``max_length``) are *skipped and
   reported* in a :class:`DataReport` -- never dropped silently.
2. :func:`encode_conversation` renders the prompt with the tokenizer's own chat template, so the
   same code serves ChatGLM2 (``[Round 1]\\n\\n问：…\\n\\n答：``) and SmolLM2 (``<|im_start|>``), and
   labels only the answer tokens plus EOS (everything else is ``-100``).
3. :func:`choose_max_length` picks ``max_length`` from the token-length distribution of the data.
4. :class:`PadCollator` pads; :class:`PackingCollator` concatenates a batch into one row with
   restarting ``position_ids`` and no attention mask, which transformers turns into a
   block-diagonal mask: packing *without* cross-sample attention and without pad tokens.
5. :func:`generate_answers` + :func:`generation_metrics` score ROUGE-1/2/L and BLEU-4 on Chinese
   (jieba words or characters).
6. :func:`chunked_lm_loss` computes the LM loss over vocabulary logits chunk by chunk, so the
   full ``batch x seq x vocab`` fp32 logits are never materialised (1 GiB at 4 x 1024 x 65024).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..cli import UserError
from ..results import atomic_write_text

IGNORE_INDEX = -100

# ChatGLM2-6B's prompt format (``tokenization_chatglm.py: build_prompt``): rounds numbered from 1,
# "问：" = question, "答：" = answer. A system message (ChatGLM2 has none) is put before round 1.
CHATGLM2_CHAT_TEMPLATE = (
    "{% set ns = namespace(round=0) %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}{% set ns.round = ns.round + 1 %}"
    "[Round {{ ns.round }}]\n\n问：{{ m['content'] }}\n\n答："
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}\n\n"
    "{% endif %}{% endfor %}"
)
NAMED_TEMPLATES = {"chatglm2": CHATGLM2_CHAT_TEMPLATE}

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system", "bot": "assistant"}


@dataclass
class SftDataArguments:
    """Which chat data to train and evaluate on, and how to cut it into sequences."""

    train_file: str | None = field(
        default="data/bentsao_med_zh/train.jsonl",
        metadata={"help": "JSONL/JSON in alpaca (instruction/input/output), sharegpt (conversations) or messages form, or a hub dataset id."},
    )
    validation_file: str | None = field(
        default="data/bentsao_med_zh/validation.jsonl", metadata={"help": "Same forms as train_file; a hub id uses its 'validation' split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep a seeded random subset of this many training records."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep a seeded random subset of this many validation records."})
    subset_seed: int = field(default=42, metadata={"help": "Seed for the max_*_samples subsets and the generation subset."})
    max_length: int = field(
        default=0,
        metadata={"help": "Token budget per sample (prompt + answer + EOS). 0 = choose from the data: the max_length_percentile "
                  "of training lengths, rounded up to a multiple of 8. Longer samples are skipped and reported."},
    )
    max_length_percentile: float = field(default=99.0, metadata={"help": "Percentile used when max_length is 0."})
    packing: bool = field(
        default=False, metadata={"help": "Concatenate each batch into one row (no padding, no cross-sample attention)."}
    )
    chat_template: str | None = field(
        default=None,
        metadata={"help": "Override the tokenizer's chat template: 'chatglm2' or a Jinja file. Needed only when the tokenizer has none."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before every conversation (if the template supports one)."})


@dataclass
class DataReport:
    """What happened to every record: kept, or skipped with a reason. Printed and saved in results."""

    source: str
    read: int = 0
    kept: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, reason: str, line: int) -> None:
        self.skipped.setdefault(reason, []).append(line)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "skipped": {reason: len(lines) for reason, lines in self.skipped.items()},
            "skipped_lines_first": {reason: lines[:10] for reason, lines in self.skipped.items()},
        }

    def describe(self) -> str:
        text = f"{self.source}: read {self.read} records, kept {self.kept}"
        for reason, lines in self.skipped.items():
            shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
            text += f"; skipped {len(lines)} ({reason}; records {shown})"
        return text


# ----------------------------------------------------------------------------------------------
# 1. Reading records
# ----------------------------------------------------------------------------------------------


def _require_str(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def record_to_messages(record: Any, where: str) -> list[dict[str, str]]:
    """One record in any supported form -> ``[{"role": ..., "content": ...}, ...]``.

    Raises :class:`UserError` naming ``where`` (``file:line``) when the record is malformed.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record or "conversations" in record:
        key = "messages" if "messages" in record else "conversations"
        turns = record[key]
        if not isinstance(turns, list) or not turns:
            raise UserError(f"{where}: '{key}' must be a non-empty list")
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise UserError(f"{where}: {key}[{i}] must be an object")
            if "role" in turn and "content" in turn:
                role, content = turn["role"], turn["content"]
            elif "from" in turn and "value" in turn:
                role, content = turn["from"], turn["value"]
            else:
                raise UserError(f"{where}: {key}[{i}] needs 'role'/'content' or 'from'/'value' (has {sorted(turn)})")
            if role not in _SHAREGPT_ROLES:
                raise UserError(f"{where}: {key}[{i}] has unknown role {role!r}")
            messages.append({"role": _SHAREGPT_ROLES[role], "content": _require_str(content, where, f"{key}[{i}].content")})
        if messages[-1]["role"] != "assistant":
            raise UserError(f"{where}: the last turn must be the assistant's answer (got role {messages[-1]['role']!r})")
        return messages
    missing = [k for k in ("instruction", "output") if k not in record]
    if missing:
        raise UserError(
            f"{where}: missing field(s) {', '.join(missing)} (expected alpaca instruction/input/output, "
            f"'messages' or 'conversations'; record has {sorted(record)})"
        )
    question = _require_str(record["instruction"], where, "instruction").strip()
    extra = _require_str(record.get("input") or "", where, "input").strip()
    if extra:
        question = f"{question}\n{extra}" if question else extra
    if not question:
        raise UserError(f"{where}: empty 'instruction' and 'input'")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": _require_str(record["system"], where, "system")})
    for i, pair in enumerate(record.get("history") or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise UserError(f"{where}: history[{i}] must be a [question, answer] pair")
        messages += [{"role": "user", "content": _require_str(pair[0], where, "history")},
                     {"role": "assistant", "content": _require_str(pair[1], where, "history")}]
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": _require_str(record["output"], where, "output")}]
    return messages


def _read_json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); re-encode the file as UTF-8") from exc
    text = text.lstrip("\ufeff")
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(data, list):
            raise UserError(f"{path}: a .json data file must hold a list of records")
        yield from enumerate(data, start=1)
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc


def load_conversations(source: str, split: str = "train", system_prompt: str | None = None) -> tuple[list[dict[str, Any]], DataReport]:
    """Read ``source`` (a file or a hub id) into ``[{"messages": [...], "line": n}]`` + a report.

    Records with an empty answer are skipped and reported; everything malformed raises.
    """
    path = Path(source)
    if path.is_file():
        rows: Iterable[tuple[int, Any]] = _read_json_lines(path)
        name = str(path)
    elif path.suffix in (".json", ".jsonl") or source.startswith((".", "/")):
        raise UserError(f"{source}: data file not found")
    else:  # a hub dataset id (needs network or a local datasets cache)
        try:
            from datasets import load_dataset

            ds = load_dataset(source, split=split)
        except Exception as exc:  # noqa: BLE001 - any loading failure is the user's input problem
            raise UserError(f"{source}: cannot load dataset split '{split}' ({str(exc).splitlines()[0]})") from exc
        rows = enumerate(ds, start=1)
        name = f"{source}[{split}]"
    report = DataReport(source=name)
    out = []
    for lineno, record in rows:
        report.read += 1
        messages = record_to_messages(record, f"{name}:{lineno}")
        if not messages[-1]["content"].strip():
            report.skip("empty answer", lineno)
            continue
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        out.append({"messages": messages, "line": lineno})
    if not out:
        raise UserError(f"{name}: no usable records ({report.describe()})")
    report.kept = len(out)
    return out, report


def seeded_subset(items: list, n: int | None, seed: int) -> list:
    """``n`` items chosen with a fixed seed, in their original order (all of them when n is None)."""
    if n is None or n >= len(items):
        return items
    import random

    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


# ----------------------------------------------------------------------------------------------
# 2. Chat template + answer-only labels
# ----------------------------------------------------------------------------------------------


def apply_template_override(tokenizer, chat_template: str | None):
    """Install ``chat_template`` ('chatglm2' or a Jinja file) and check the tokenizer has one."""
    if chat_template:
        if chat_template in NAMED_TEMPLATES:
            tokenizer.chat_template = NAMED_TEMPLATES[chat_template]
        elif Path(chat_template).is_file():
            tokenizer.chat_template = Path(chat_template).read_text(encoding="utf-8")
        else:
            raise UserError(f"--chat_template {chat_template}: neither {'/'.join(NAMED_TEMPLATES)} nor a file")
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; pass --chat_template chatglm2 or a Jinja file")
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token; the model could never learn to stop")
    return tokenizer


def render_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """The text the model sees before it answers: every turn but the last, plus the answer cue."""
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)


def encode_conversation(tokenizer, messages: Sequence[dict[str, str]]) -> dict[str, list[int]]:
    """Token ids and labels for one conversation; only the final answer (and EOS) is learned.

    Earlier turns are context, as in ChatGLM2's own fine-tuning code. The prompt is rendered by
    the chat template (which already contains any BOS / ``[gMASK]`` prefix it wants), so the
    tokenizer must not add special tokens a second time.
    """
    prompt_ids = tokenizer(render_prompt(tokenizer, messages[:-1]), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def choose_max_length(lengths: Sequence[int], percentile: float = 99.0, multiple: int = 8, cap: int | None = None) -> int:
    """The ``percentile`` of ``lengths`` rounded up to ``multiple`` (and at most ``cap``)."""
    import numpy as np

    value = int(math.ceil(float(np.percentile(np.asarray(lengths), percentile)) / multiple) * multiple)
    return min(value, cap) if cap else value


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(lengths)
    return {"n": int(arr.size), "mean": round(float(arr.mean()), 1), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)), "max": int(arr.max())}


def encode_dataset(tokenizer, conversations: list[dict[str, Any]], report: DataReport, max_length: int) -> list[dict[str, list[int]]]:
    """Encode and drop (reporting) samples longer than ``max_length`` tokens."""
    out = []
    for conv in conversations:
        enc = conv.get("_enc") or encode_conversation(tokenizer, conv["messages"])
        if len(enc["input_ids"]) > max_length:
            report.skip(f"longer than max_length={max_length} tokens", conv["line"])
            continue
        out.append(enc)
    report.kept = len(out)
    if not out:
        raise UserError(f"{report.source}: every sample is longer than max_length={max_length}")
    return out


class ListDataset:
    """A plain list as a torch-style dataset (``Trainer`` only needs ``__len__``/``__getitem__``)."""

    def __init__(self, items: list[dict[str, list[int]]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ----------------------------------------------------------------------------------------------
# 4. Collators
# ----------------------------------------------------------------------------------------------


@dataclass
class PadCollator:
    """Right-pad ``input_ids`` with ``pad_token_id`` and ``labels`` with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict[str, list[int]]]):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackingCollator:
    """Concatenate a batch into ONE row; ``position_ids`` restart at 0 for every sample.

    No ``attention_mask`` is returned: transformers then reads the sample boundaries from the
    position ids and builds a block-diagonal causal mask (SDPA/eager) or variable-length
    flash-attention calls, so a token never attends to another sample. Each sample's first label
    is -100 (it is a prompt token), so no token is trained to predict the next sample either.
    """

    def __call__(self, features: list[dict[str, list[int]]]):
        import torch

        ids, labels, pos = [], [], []
        for f in features:
            ids += f["input_ids"]
            labels += [IGNORE_INDEX] + list(f["labels"][1:])
            pos += list(range(len(f["input_ids"])))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos])}


# ----------------------------------------------------------------------------------------------
# 5. Generation and Chinese ROUGE / BLEU
# ----------------------------------------------------------------------------------------------


def generate_answers(model, tokenizer, conversations: list[dict[str, Any]], max_new_tokens: int = 128, batch_size: int = 8,
                     progress: bool = True) -> list[str]:
    """Greedy answers to every conversation's prompt (all turns but the last), batched, left-padded."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, c["messages"][:-1]) for c in conversations]
    device = next(p.device for p in model.parameters())
    answers: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            if progress:
                print(f"generated {len(answers)}/{len(prompts)}", flush=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def chinese_tokens(text: str, mode: str = "jieba") -> list[str]:
    """Words (jieba) or characters, whitespace dropped: the units ROUGE/BLEU count on Chinese."""
    if mode == "char":
        return [ch for ch in text if not ch.isspace()]
    if mode == "jieba":
        import jieba

        jieba.setLogLevel(60)
        return [w for w in jieba.lcut(text) if w.strip()]
    raise UserError(f"metric tokens must be 'jieba' or 'char', got {mode!r}")


def _rouge_n(hyp: list[str], ref: list[str], n: int) -> float:
    from collections import Counter

    h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
    r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    overlap = sum((h & r).values())
    if not overlap:
        return 0.0
    p, rc = overlap / sum(h.values()), overlap / sum(r.values())
    return 2 * p * rc / (p + rc)


def _rouge_l(hyp: list[str], ref: list[str]) -> float:
    if not hyp or not ref:
        return 0.0
    prev = [0] * (len(ref) + 1)
    for a in hyp:
        cur = [0]
        for j, b in enumerate(ref, start=1):
            cur.append(prev[j - 1] + 1 if a == b else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, r = lcs / len(hyp), lcs / len(ref)
    return 2 * p * r / (p + r)


def generation_metrics(predictions: Sequence[str], references: Sequence[str], tokens: str = "jieba") -> dict[str, float]:
    """Mean per-sample ROUGE-1/2/L F1 and corpus BLEU-4 (sacrebleu), x100, on Chinese tokens.

    ROUGE is the plain n-gram / longest-common-subsequence F1 that ``rouge-chinese`` computes, done
    here directly so an empty prediction scores 0 instead of raising.
    """
    import sacrebleu

    if len(predictions) != len(references) or not references:
        raise ValueError("need as many predictions as references (and at least one)")
    hyps = [chinese_tokens(p, tokens) for p in predictions]
    refs = [chinese_tokens(r, tokens) for r in references]
    n = len(refs)
    bleu = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none")
    return {
        "rouge-1": round(100 * sum(_rouge_n(h, r, 1) for h, r in zip(hyps, refs)) / n, 2),
        "rouge-2": round(100 * sum(_rouge_n(h, r, 2) for h, r in zip(hyps, refs)) / n, 2),
        "rouge-l": round(100 * sum(_rouge_l(h, r) for h, r in zip(hyps, refs)) / n, 2),
        "bleu-4": round(float(bleu.score), 2),
    }


def write_predictions(path: str | os.PathLike, conversations, columns: dict[str, list[str]]) -> None:
    """JSONL: question, reference and one column per system (``base``, ``adapter``), atomically."""
    lines = []
    for i, conv in enumerate(conversations):
        row = {"line": conv["line"], "question": conv["messages"][-2]["content"], "reference": conv["messages"][-1]["content"]}
        row.update({name: values[i] for name, values in columns.items()})
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(Path(path), "".join(lines))


# ----------------------------------------------------------------------------------------------
# 6. Loss without full fp32 logits
# ----------------------------------------------------------------------------------------------


def chunked_lm_loss(hidden, lm_head, labels, chunk_tokens: int = 1024):
    """Mean next-token cross-entropy, computed ``chunk_tokens`` positions at a time.

    Each chunk's logits are recomputed in backward (activation checkpointing), so peak memory holds
    one ``chunk x vocab`` block instead of ``batch x seq x vocab`` fp32 logits.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    target = labels[:, 1:].reshape(-1)
    n_valid = (target != IGNORE_INDEX).sum().clamp(min=1)

    def block(h, t):
        return F.cross_entropy(lm_head(h).float(), t, ignore_index=IGNORE_INDEX, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start:start + chunk_tokens], target[start:start + chunk_tokens]
        if (t != IGNORE_INDEX).any():
            total = total + checkpoint(block, h, t, use_reentrant=False)
    return total / n_valid


# ----------------------------------------------------------------------------------------------
# Model loading helpers
# ----------------------------------------------------------------------------------------------


def quantizable_model_path(model: str, cache_dir: str = "outputs/cache") -> str:
    """transformers refuses ``quantization_config`` together with a GGUF file. For a GGUF model
    (e.g. ``packaged:smollm2``) de-quantise it once into ``cache_dir`` as safetensors and return
    that folder, which *can* be loaded in 4-bit; any other model string is returned unchanged."""
    from ..llm import load_causal_lm, load_tokenizer, resolve_model

    path, gguf = resolve_model(model)
    if not gguf:
        return model
    target = Path(cache_dir) / (Path(gguf).stem + "-dequantized")
    if (target / "config.json").is_file():
        return str(target)
    print(f"de-quantising {gguf} once into {target} (GGUF cannot be loaded in 4-bit directly)", flush=True)
    tmp = target.with_name(target.name + ".tmp")
    import torch
    from transformers import AutoModelForCausalLM

    lm = load_causal_lm(model, dtype="float32")
    # The GGUF-loaded model is flagged "quantized with gguf" and refuses save_pretrained: copy its
    # (already de-quantised) weights into a plain model built from the same config.
    config = lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(lm.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(tmp)
    load_tokenizer(model).save_pretrained(tmp)
    os.replace(tmp, target)
    return str(target)


def is_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_tiny_glm(out_dir: str | os.PathLike, texts: Sequence[str], vocab_size: int = 600, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> str:
    """A tiny random ChatGLM2-shaped ``GlmForCausalLM`` + byte-level BPE tokenizer (trained on
    ``texts``) with the ChatGLM2 chat template, saved to ``out_dir``: for CPU tests and dry runs.

    Same architecture family as the native ChatGLM2 conversion: grouped-query attention, half the
    head dimension rotated (``partial_rotary_factor=0.5``), fused gate/up MLP, RMSNorm.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(list(texts), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = CHATGLM2_CHAT_TEMPLATE
    config = GlmConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4, partial_rotary_factor=0.5,
                       max_position_embeddings=1024, rms_norm_eps=1e-5, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    GlmForCausalLM(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)
