"""Per-row decoding for the server's batch: which token each row takes next, and how its tokens
become text that is safe to send.

Kept apart from :mod:`imdb_llm.serve.engine` (the queue and the scheduling) because this is the
part that must decode exactly like the evaluation and the chat CLI: the repetition controls are
:func:`imdb_llm.llm.generation.apply_repetition_controls`, the very function ``generate`` runs
through :func:`imdb_llm.llm.generation.repetition_processor`, applied to the row's answer so far.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from imdb_llm.llm.generation import apply_repetition_controls

if TYPE_CHECKING:  # only for annotations: the engine imports this module
    from imdb_llm.serve.scheduler import Job


def choose_tokens(logits, rows: Sequence[tuple["Job", Any]], fail: Callable[["Job", BaseException], None]):
    """One token per row of ``logits`` ``[rows, vocab]`` (changed in place by the repetition
    controls): argmax for greedy rows, each sampled row (a ``(job, generator)`` with a generator)
    from its own generator with the job's temperature and top_p. A row that raises (NaN logits, say)
    is handed to ``fail`` and the others go on."""
    import torch

    for i, (job, _generator) in enumerate(rows):
        s = job.settings
        if s.repetition_penalty != 1.0 or s.no_repeat_ngram_size > 0:
            apply_repetition_controls(logits[i:i + 1], [job.token_ids], s.repetition_penalty, s.no_repeat_ngram_size)
    tokens = logits.argmax(dim=-1)
    for i, (job, generator) in enumerate(rows):
        if generator is None:
            continue
        try:
            probs = torch.softmax(logits[i] / job.settings.temperature, dim=-1)
            if job.settings.top_p < 1.0:  # nucleus: keep the smallest set of tokens holding top_p of the mass
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(-1) - sorted_probs > job.settings.top_p  # the top token always stays
                probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
            tokens[i] = torch.multinomial(probs, 1, generator=generator)[0]
        except Exception as exc:  # e.g. NaN logits in this row: it fails, the rest go on
            fail(job, exc)
    return tokens


class TextStream:
    """Turns a job's token ids into safe-to-send text deltas, and finds its stop strings.

    Text is re-decoded from all generated ids each step (byte-level BPE pieces only make sense
    together), and held back while it ends in an incomplete UTF-8 character or in something that
    could still grow into a stop string.
    """

    def __init__(self, job: "Job", tokenizer, lock: threading.Lock):
        self.job, self.tokenizer, self.lock = job, tokenizer, lock
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""
        self.hit_stop = False
        self._max_stop = max((len(s) for s in job.stop), default=0)

    def add(self, token_id: int) -> None:
        if self.hit_stop:
            return
        self.job.token_ids.append(token_id)
        with self.lock:
            self.text = self.tokenizer.decode(self.job.token_ids, skip_special_tokens=True)
        self._emit_safe(final=False)

    def flush(self) -> None:
        self._emit_safe(final=True)

    def _emit_safe(self, final: bool) -> None:
        text = self.text
        if self.job.stop:
            start = max(0, self.sent - self._max_stop)
            hits = [i for i in (text.find(s, start) for s in self.job.stop) if i >= 0]
            if hits:
                self.hit_stop = True
                self.text = text = text[: min(hits)]
                final = True
        end = len(text)
        if not final:
            if text.endswith("\ufffd"):  # half a multi-byte character: wait for the rest
                end = len(text.rstrip("\ufffd"))
            for stop in self.job.stop:  # keep back a tail that may be the start of a stop string
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if text[:end].endswith(stop[:k]):
                        end -= k
                        break
        if end > self.sent:
            self.job.emit(("delta", text[self.sent : end]))
            self.sent = end


def static_generation_config(model, job: "Job", *, eos_ids: list[int], pad_id: int, cache_len: int, compile: bool):
    """``model.generate``'s config for one job on the batch-1 path (static cache, maybe compiled):
    the model's own config with the job's sampling knobs, one cache size for every request (one set
    of shapes, no recompiles)."""
    import copy

    cfg = copy.deepcopy(model.generation_config)
    cfg.max_new_tokens = job.max_new_tokens
    cfg.max_length = None
    cfg.min_new_tokens = None
    cfg.do_sample = job.settings.do_sample
    if cfg.do_sample:
        cfg.temperature, cfg.top_p = job.settings.temperature, job.settings.top_p
    else:
        cfg.temperature, cfg.top_p = None, None
    cfg.top_k = None  # OpenAI has no top-k: don't inherit the library default of 50
    cfg.repetition_penalty, cfg.no_repeat_ngram_size = 1.0, 0  # ours act on the answer only (a logits processor)
    cfg.num_beams, cfg.num_return_sequences = 1, 1
    cfg.eos_token_id = eos_ids or None
    cfg.pad_token_id = pad_id
    cfg.cache_implementation = "static"
    cfg.max_cache_len = cache_len
    if compile:
        from transformers import CompileConfig

        on_gpu = next(model.parameters()).device.type == "cuda"
        cfg.compile_config = CompileConfig(fullgraph=False, mode="reduce-overhead" if on_gpu else "default")
        cfg.compile_config._compile_all_devices = True  # --compile means compile, on CPU too
    else:
        cfg.disable_compile = True
    return cfg
