"""A model's generation defaults, in one place, and the repetition controls they switch on.

Why: the evaluation, the chat CLI, the server and the web page used to decode with four different
settings, so the judged answers were not the answers a user saw. Now every one of them asks
:func:`resolve_generation_defaults` for the model's :class:`GenerationDefaults` and applies the
user's explicit flags on top (:meth:`GenerationDefaults.override`). Where the defaults come from,
first found wins:

1. ``generation_defaults.json`` in the adapter folder, then in the model folder: written by
   ``scripts/sft_qlora.py`` with the decoding settings it judged the model with (the choice of its
   decoding search when it ran one);
2. the sampling fields a model folder's own ``generation_config.json`` sets (the native ChatGLM2
   conversion sets ChatGLM2's chat defaults: sampling, temperature 0.8, top_p 0.8);
3. :class:`GenerationDefaults` as declared: greedy, no repetition control.

The repetition controls act on the *answer* only, not the prompt: a medical answer should be free
to repeat the disease named in the question, and a left-padded batch then decodes each row as it
would alone (the pad tokens are prompt). transformers' own ``repetition_penalty`` and
``no_repeat_ngram_size`` cover the prompt too, so they are always passed switched off and
:func:`repetition_processor` does the work, in ``generate`` and in the server's own decode loop
alike.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from imdb_llm.cli import UserError
from imdb_llm.results import atomic_write_text

DEFAULTS_FILE = "generation_defaults.json"
# generation_config.json keys that are also ours (the rest of that file is not a decoding choice).
_HF_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty", "no_repeat_ngram_size")


@dataclass(frozen=True)
class GenerationDefaults:
    """How a model answers when the user says nothing: length, sampling, repetition control."""

    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (true) or decode greedily (false)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (used only when sampling)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (used only when sampling)."})
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "Divide the logit of every token already in the answer by this (multiply when negative); 1.0 = off."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Never repeat an n-gram of this many tokens within the answer; 0 = off."})
    source: str = field(default="built-in", compare=False, metadata={"help": "Where these values came from (not a setting)."})

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not 0.0 < self.temperature <= 5.0:
            raise UserError(f"temperature must be in (0, 5], got {self.temperature} (for greedy decoding set do_sample false)")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 < self.repetition_penalty <= 10.0:
            raise UserError(f"repetition_penalty must be in (0, 10], got {self.repetition_penalty}")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise UserError(f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size!r}")

    # -- building and changing -----------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "built-in", base: "GenerationDefaults | None" = None) -> "GenerationDefaults":
        """``base`` (or the declared defaults) with ``values`` on top; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"{source}: unknown generation setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        start = (base or cls()).to_dict()
        start.update({k: _coerce(k, v, source) for k, v in values.items()})
        return cls(**start, source=source)

    @classmethod
    def from_spec(cls, spec: str, base: "GenerationDefaults | None" = None) -> "GenerationDefaults":
        """``"repetition_penalty=1.2,no_repeat_ngram_size=8"`` on top of ``base``: a search candidate."""
        values = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise UserError(f"decoding candidate {spec!r}: expected key=value pairs separated by commas")
            values[key.strip()] = value.strip()
        return cls.from_mapping(values, source=f"candidate {spec}", base=base)

    def override(self, **explicit: Any) -> "GenerationDefaults":
        """These defaults with the values the user gave explicitly (``None`` = not given)."""
        given = {k: v for k, v in explicit.items() if v is not None}
        if given.get("temperature") == 0:  # OpenAI's way of asking for greedy decoding
            given.pop("temperature")
            given["do_sample"] = False
        if all(getattr(self, k) == v for k, v in given.items() if k != "source"):
            return self
        return GenerationDefaults.from_mapping(given, source=f"{self.source} + explicit flags", base=self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}

    def spec(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.to_dict().items())

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / DEFAULTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    # -- using them ----------------------------------------------------------------------------
    @property
    def sampling_temperature(self) -> float:
        """The OpenAI-style temperature: 0 means greedy."""
        return self.temperature if self.do_sample else 0.0

    def generate_kwargs(self, prompt_width: int) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` on prompts ``prompt_width`` tokens wide."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
                                  # ours act on the answer only (see the module docstring): transformers' own stay off
                                  "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)  # top_k 0: no library default of 50
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        processor = repetition_processor(prompt_width, self.repetition_penalty, self.no_repeat_ngram_size)
        if processor is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([processor])
        return kwargs


def _coerce(key: str, value: Any, source: str) -> Any:
    """Values from JSON, YAML or a ``key=value`` spec, as the field's type."""
    kind = {f.name: f.type for f in dataclasses.fields(GenerationDefaults)}[key]
    try:
        if kind == "bool" and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind == "int":
            number = float(value)
            if isinstance(value, bool) or not number.is_integer():
                raise ValueError(value)
            return int(number)
        return {"float": float, "bool": bool}[kind](value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {key}={value!r} is not a valid {kind}") from None


@dataclass
class GenerationOverrides:
    """Explicit decoding flags; each one left unset keeps the model's generation defaults."""

    max_new_tokens: int | None = field(default=None, metadata={"help": "Longest answer in tokens (default: the model's generation defaults)."})
    do_sample: bool | None = field(default=None, metadata={"help": "Sample (true) or decode greedily (false) (default: the model's)."})
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature (default: the model's)."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling mass (default: the model's)."})
    repetition_penalty: float | None = field(default=None, metadata={"help": "Penalty on tokens already in the answer; 1.0 = off (default: the model's)."})
    no_repeat_ngram_size: int | None = field(default=None, metadata={"help": "Ban repeating any n-gram of this many tokens in the answer; 0 = off (default: the model's)."})

    def __post_init__(self):
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError("--max_new_tokens must be >= 1")

    def apply(self, defaults: GenerationDefaults) -> GenerationDefaults:
        return defaults.override(**dataclasses.asdict(self))

    def resolve(self, model: str, adapter: str | None = None) -> GenerationDefaults:
        """``model``'s (or ``adapter``'s) generation defaults with these flags on top: how the chat
        CLI, the server, the evaluations and the fine-tuning run's judging all decide how to decode."""
        return self.apply(resolve_generation_defaults(model, adapter))


# --------------------------------------------------------------------------------------------
# Where a model's defaults live
# --------------------------------------------------------------------------------------------
def _folder(model: str | None) -> Path | None:
    if not model:
        return None
    if model.startswith("packaged:"):
        from imdb_llm.weights import resolve_model

        try:
            return Path(resolve_model(model)[0])
        except UserError:
            return None
    path = Path(model).expanduser()
    return path.parent if path.is_file() else path if path.is_dir() else None


def _candidate_files(model: str, adapter: str | None) -> list[Path]:
    """The files to look in, first found wins: ours in the adapter, ours in the model, the model's own."""
    adapter_dir, model_dir = _folder(adapter), _folder(model)
    files = [adapter_dir / DEFAULTS_FILE] if adapter_dir else []
    if model_dir:
        files += [model_dir / DEFAULTS_FILE, model_dir / "generation_config.json"]
    return files


def resolve_generation_defaults(model: str, adapter: str | None = None) -> GenerationDefaults:
    """The generation defaults of ``model`` (+ ``adapter``); see the module docstring for the order.

    The same files give the same object (cached), so the evaluation, the chat CLI and the server
    of one process literally share it; a changed file gives a new one."""
    files = _candidate_files(model, adapter)
    stamps = tuple((str(f), f.stat().st_mtime_ns if f.is_file() else None) for f in files)
    return _resolve(stamps)


@functools.lru_cache(maxsize=64)
def _resolve(stamps: tuple) -> GenerationDefaults:
    for name, stamp in stamps:
        if stamp is None:
            continue
        path = Path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read generation settings ({exc})") from exc
        if path.name == DEFAULTS_FILE:
            return GenerationDefaults.from_mapping(data, source=str(path))
        found = {k: data[k] for k in _HF_KEYS if data.get(k) is not None}
        if found:
            return GenerationDefaults.from_mapping(found, source=str(path))
    return GenerationDefaults()


# --------------------------------------------------------------------------------------------
# Repetition control on the answer
# --------------------------------------------------------------------------------------------
def banned_next_tokens(ids: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an ``n``-gram already present in ``ids``."""
    if n < 1 or len(ids) < n:
        return set()
    prefix = tuple(ids[len(ids) - n + 1:]) if n > 1 else ()
    return {ids[j + n - 1] for j in range(len(ids) - n + 1) if tuple(ids[j:j + n - 1]) == prefix}


def apply_repetition_controls(scores, answers: Sequence[Sequence[int]], penalty: float = 1.0, ngram: int = 0):
    """Penalise (CTRL's rule: divide a positive logit, multiply a negative one) every token already in
    row ``i``'s answer ``answers[i]``, and ban tokens that would repeat an ``ngram``-gram of it.
    ``scores`` is ``[rows, vocab]`` and is changed in place (and returned)."""
    import torch

    for i, ids in enumerate(answers):
        if not ids:
            continue
        if penalty != 1.0:
            seen = torch.tensor(sorted(set(ids)), device=scores.device, dtype=torch.long)
            s = scores[i, seen]
            scores[i, seen] = torch.where(s < 0, s * penalty, s / penalty)
        if ngram > 0:
            banned = banned_next_tokens(list(ids), ngram)
            if banned:
                scores[i, torch.tensor(sorted(banned), device=scores.device, dtype=torch.long)] = float("-inf")
    return scores


@functools.lru_cache(maxsize=1)
def _processor_class():
    from transformers import LogitsProcessor

    class AnswerRepetitionControls(LogitsProcessor):
        """:func:`apply_repetition_controls` on the tokens after the (left-padded) prompt."""

        def __init__(self, prompt_width: int, penalty: float, ngram: int):
            self.prompt_width, self.penalty, self.ngram = prompt_width, penalty, ngram

        def __call__(self, input_ids, scores):
            answers = input_ids[:, self.prompt_width:].tolist()
            return apply_repetition_controls(scores, answers, self.penalty, self.ngram)

    return AnswerRepetitionControls


def repetition_processor(prompt_width: int, penalty: float = 1.0, ngram: int = 0):
    """A ``LogitsProcessor`` for ``generate`` on prompts ``prompt_width`` wide; None when both are off."""
    if penalty == 1.0 and ngram <= 0:
        return None
    return _processor_class()(prompt_width, penalty, ngram)
