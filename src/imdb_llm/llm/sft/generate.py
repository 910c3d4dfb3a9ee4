"""Answers from a chat model, batched, and cached so a rerun does not generate them again.

Batching: prompts are left-padded so every row's last real token sits at the same position and the
new tokens line up; greedy decoding then gives each prompt the answer it would get alone, with or
without the repetition controls, which look at the answer only (tested in tests/test_sft_generate.py).
Prompts are sorted by length before batching so a batch pads little, and answers are returned in
the caller's order. How to decode is one :class:`~imdb_llm.llm.generation.GenerationDefaults`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from imdb_llm.llm.prompts import render_prompt
from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.llm.sft.metrics import repeat_count
from imdb_llm.results import atomic_write_text


def generate_answers(model, tokenizer, conversations: list[dict[str, Any]], settings: GenerationDefaults | None = None, batch_size: int = 8,
                     progress: bool = True, seed: int = 0) -> list[str]:
    """Answers to every conversation's prompt (all turns but the last), batched, left-padded, decoded
    with ``settings`` (default: greedy, 512 tokens); sampling starts from ``seed``."""
    import torch

    settings = settings or GenerationDefaults()
    if settings.do_sample:
        torch.manual_seed(seed)
    prompts = [render_prompt(tokenizer, c["messages"][:-1]) for c in conversations]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    device = next(p.device for p in model.parameters())
    answers: list[str | None] = [None] * len(prompts)
    side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "left"
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                # use_cache explicitly: training scripts switch model.config.use_cache off, and generate()
                # would follow it and recompute every earlier token at each step (quadratic, ~10x slower).
                out = model.generate(**batch, **settings.generate_kwargs(batch["input_ids"].shape[1]), pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id, use_cache=True)
            new = out[:, batch["input_ids"].shape[1]:]
            for i, text in zip(rows, tokenizer.batch_decode(new, skip_special_tokens=True)):
                answers[i] = text.strip().rstrip("\ufffd")  # a cut inside a multi-byte character decodes as U+FFFD
            if progress:
                print(f"generated {min(start + batch_size, len(order))}/{len(prompts)}", flush=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers  # type: ignore[return-value]


def model_fingerprint(model_name_or_path: str) -> str:
    """What identifies a base model's weights: the name, plus size and mtime of a local folder's files."""
    parts = [model_name_or_path]
    folder = Path(model_name_or_path)
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in (".safetensors", ".bin", ".gguf", ".json", ".model"):
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def answers_cache_key(model_id: str, prompts: Sequence[str], settings: dict[str, Any]) -> str:
    """sha256 over the model, every prompt and the generation settings: any change, a new key."""
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_id, "settings": settings}, sort_keys=True).encode())
    for p in prompts:
        h.update(b"\x00" + p.encode("utf-8"))
    return h.hexdigest()[:24]


def weights_digest(model) -> str:
    """sha256 of the trainable weights (the adapter, or every weight after full fine-tuning): what
    identifies a tuned model for the answer cache, whatever folder or checkpoint it came from."""
    h = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.requires_grad:
            h.update(name.encode())
            h.update(param.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def cached_answers(cache_dir: str | os.PathLike | None, model_id: str, model, tokenizer, conversations: list[dict[str, Any]],
                   settings: GenerationDefaults, batch_size: int, seed: int = 0) -> tuple[list[str], bool]:
    """:func:`generate_answers`, read from ``cache_dir`` when the same model, prompts and settings
    were answered before. Returns the answers and whether they came from the cache."""
    if not cache_dir:
        return generate_answers(model, tokenizer, conversations, settings, batch_size, seed=seed), False
    prompts = [render_prompt(tokenizer, c["messages"][:-1]) for c in conversations]
    key_settings = {**settings.to_dict(), **({"seed": seed} if settings.do_sample else {})}
    key = answers_cache_key(model_id, prompts, key_settings)
    path = Path(cache_dir) / f"answers-{key}.json"
    if path.is_file():
        try:
            answers = json.loads(path.read_text(encoding="utf-8"))["answers"]
            if isinstance(answers, list) and len(answers) == len(prompts):
                print(f"answers from the cache {path}", flush=True)
                return answers, True
        except (ValueError, KeyError):
            pass  # a damaged cache entry is regenerated and overwritten
    answers = generate_answers(model, tokenizer, conversations, settings, batch_size, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"model": model_id, "settings": key_settings, "answers": answers}, ensure_ascii=False))
    return answers, False


def write_predictions(path: str | os.PathLike, conversations, columns: dict[str, list[str]]) -> None:
    """JSONL: question, reference and one column per system (``base``, ``tuned``), each with its
    answer's loop measure (``<system>_repeats``: :func:`~imdb_llm.llm.sft.metrics.repeat_count`), so
    the report can show the most stuck answers without recomputing anything; atomically."""
    lines = []
    for i, conv in enumerate(conversations):
        row = {"line": conv["line"], "question": conv["messages"][-2]["content"], "reference": conv["messages"][-1]["content"]}
        for name, values in columns.items():
            row.update({name: values[i], f"{name}_repeats": repeat_count(values[i])})
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(Path(path), "".join(lines))
