"""Reading chat records (alpaca, sharegpt, messages) into conversations; broken records are
errors naming file:line, unusable ones are skipped and reported in a :class:`DataReport`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from imdb_llm.cli import UserError

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
    carve_validation: float = field(
        default=0,
        metadata={"help": "Hold out this many training records (>= 1) or this share of them (< 1), seeded, as the validation set "
                  "for the loss, the choice of checkpoint and the decoding search; validation_file is then judged once, at the end, "
                  "like a test set. 0 = no carve: validation_file serves for everything (as before)."},
    )
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

    def __post_init__(self):
        if self.carve_validation < 0 or (self.carve_validation >= 1 and not float(self.carve_validation).is_integer()):
            raise UserError(f"--carve_validation {self.carve_validation}: give a share in [0, 1) or a whole number of records")


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


def carve(items: list, size: float, seed: int) -> tuple[list, list]:
    """Split ``items`` into (kept, carved): ``size`` records (>= 1) or that share (< 1) carved at
    random with ``seed``, both parts in their original order. Carving before any subset keeps the
    carved set the same whatever max_train_samples is."""
    import random

    n = int(size) if size >= 1 else int(round(size * len(items)))
    if n <= 0:
        return items, []
    if n >= len(items):
        raise UserError(f"cannot carve {n} validation records out of {len(items)} training records")
    carved = set(random.Random(seed).sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i not in carved], [x for i, x in enumerate(items) if i in carved]
