"""The generation engine of the server: a waiting queue, admission limits, and continuous batching.

Why it looks like this:

* ONE worker thread owns the model, so requests never race on it or on a KV cache; the HTTP
  side (:mod:`imdb_llm.serve.api_server`) only queues :class:`Job` s and reads the events they emit.
* **Continuous batching.** The worker keeps a running :class:`~imdb_llm.serve.batch.PaddedBatch`.
  Before every decode step it admits waiting jobs (prefilling them together and merging them into
  the batch), and after every step it retires the rows that finished, were cancelled or failed.
  So a request that arrives while others run starts at the next step, not after them, and a
  short answer leaves without waiting for a long one.
* **Per request, inside one batch:** its own ``max_tokens``, temperature / top_p, repetition
  penalty / no-repeat n-gram size (on its own answer, as in the evaluation: :mod:`imdb_llm.serve.sampler`),
  seed (each job samples from its own ``torch.Generator``, so its tokens do not depend on who shares
  the batch), stop strings, streaming and cancellation. A failing row is retired with an error; the
  others go on.
* **Bounded memory.** At most ``max_running`` rows, and a batch may only grow while
  ``rows x (padded width + longest remaining answer)`` - the most KV-cache slots it can reach -
  stays within ``max_batch_tokens``. Beyond ``max_queue`` waiting jobs, :meth:`submit` raises
  :class:`Overloaded` (the API turns it into HTTP 503 with ``Retry-After``).
* **Shared prompt prefix.** Chat templates put the same system prompt in front of every request;
  its keys/values are computed once, kept, and copied into later prompts that start with it, so
  prefill (the compute-bound part on a CPU) only runs on what differs.
* ``decode="static"`` / ``"compile"`` keep the batch-1 fast path: ``model.generate`` with a
  preallocated cache (and ``torch.compile``), one job at a time. Fixed shapes are what make CUDA
  graphs possible, and a batch that changes every step has none.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from imdb_llm.cli import UserError
from imdb_llm.llm.loading import context_length_of
from imdb_llm.serve.batch import ChunkedPrefill, PaddedBatch
from imdb_llm.serve.prefix_cache import PrefixCache
from imdb_llm.serve.sampler import TextStream, choose_tokens, static_generation_config
from imdb_llm.serve.scheduler import Job, Overloaded, Scheduler

__all__ = ["EngineArgs", "GenerationEngine", "Job", "Overloaded"]


def check_limits(max_queue: int, max_running: int, max_batch_tokens: int, batch_window_ms: float, prefill_chunk: int,
                 error=ValueError, flag: str = "") -> None:
    """The engine's limits, checked in one place: for the command line (``error=UserError``, ``flag="--"``,
    so the message names the flag) and for code that builds an engine directly. Names the first bad one."""
    limits = {"max_queue": (max_queue, 1), "max_running": (max_running, 1), "max_batch_tokens": (max_batch_tokens, 1),
              "batch_window_ms": (batch_window_ms, 0), "prefill_chunk": (prefill_chunk, 0)}
    for name, (value, least) in limits.items():
        if value < least:
            raise error(f"{flag}{name} must be >= {least}, got {value}")

@dataclass
class EngineArgs:
    """How the engine schedules and decodes, in one place (vLLM's ``EngineArgs``, in small). Its fields
    are ``serve.py``'s flags of the same names; :meth:`GenerationEngine.from_args` builds the engine."""

    max_model_len: int | None = field(default=None, metadata={"help": "Cap the context (prompt + completion) below the model's own limit."})
    max_queue: int = field(default=256, metadata={"help": "Requests waiting (not yet running) beyond this get HTTP 503 with a Retry-After header."})
    max_running: int = field(default=64, metadata={"help": "Continuous batching: at most this many requests decode together in one batch; the rest wait in the queue."})
    max_batch_tokens: int = field(default=65536, metadata={"help": "Memory cap of the batch in KV-cache token slots: a request joins only while rows x (padded length + longest answer still to come) stays within it. KV bytes per slot = 2 x layers x kv_heads x head_dim x dtype bytes."})
    batch_window_ms: float = field(default=0.0, metadata={"help": "When idle, wait this long after the first request so a burst starts as one batch (requests arriving later join at the next step anyway)."})
    prefill_chunk: int = field(default=128, metadata={"help": "Prefill long prompts in chunks of at most this many tokens, with a decode step of the running requests between two chunks, so one long prompt does not freeze every stream; 0 = a whole prompt at once."})
    prefix_cache: bool = field(default=True, metadata={"help": "Compute the prompt prefix requests share (e.g. the chat template's system prompt) once and reuse its KV cache."})
    compile: bool = field(default=False, metadata={"help": "GPU: static KV cache + torch.compile with CUDA graphs, one request at a time (no batching); the first requests wait while it compiles. On a CPU both ways are timed at startup and the flag is refused when compiling is not faster."})
    static_cache: bool = field(default=False, metadata={"help": "Static KV cache without compiling, one request at a time (fixed shapes; mainly for testing)."})

    def __post_init__(self):
        if self.compile and self.static_cache:
            raise UserError("choose one of --compile and --static_cache (--compile already uses a static cache)")
        check_limits(self.max_queue, self.max_running, self.max_batch_tokens, self.batch_window_ms, self.prefill_chunk, error=UserError, flag="--")

    @property
    def decode(self) -> str:
        return "compile" if self.compile else "static" if self.static_cache else "dynamic"


@dataclass
class _Row:
    """A job running in the batch: its text stream and its own random generator."""

    job: Job
    stream: TextStream
    generator: Any  # torch.Generator, or None for greedy
    started: float
    failed: bool = False  # retired with an error: drop it from the batch, send nothing more


class GenerationEngine:
    """The waiting queue and the worker thread that decodes every admitted job in one batch.

    ``decode`` picks the path: ``"dynamic"`` (continuous batching, the default), ``"static"`` (a
    preallocated cache of ``context_length`` slots, one job at a time) or ``"compile"`` (static
    cache + ``torch.compile``, CUDA graphs on GPU: the fast path for batch-1 decoding).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        context_length: int,
        decode: str = "dynamic",
        max_queue: int = 256,
        max_running: int = 64,
        max_batch_tokens: int = 65536,
        batch_window_ms: float = 0.0,
        prefix_cache: bool = True,
        prefill_chunk: int = 0,
        history: int = 1000,
    ):
        import torch

        if decode not in ("dynamic", "static", "compile"):
            raise ValueError(f"decode must be dynamic, static or compile, not {decode!r}")
        check_limits(max_queue, max_running, max_batch_tokens, batch_window_ms, prefill_chunk)
        self.model, self.tokenizer = model, tokenizer
        self.context_length, self.decode = context_length, decode
        self.scheduler = Scheduler(max_queue=max_queue, max_running=max_running if decode == "dynamic" else 1,
                                   max_batch_tokens=max_batch_tokens, history=history)
        self.batch_window = batch_window_ms / 1000
        self.prefixes = PrefixCache(prefix_cache)
        self.prefill_chunk = prefill_chunk
        self.device = next(model.parameters()).device
        self.tokenizer_lock = threading.Lock()
        self.history = self.scheduler.history  # (job id, finish_reason, completion_tokens)
        self.eos_ids = self._eos_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_ids or [0])[0]
        self.stats = {"steps": 0, "prefills": 0, "peak_running": 0, "finished": 0, "prefix_hits": 0, "prefill_chunks": 0}
        self._torch = torch
        self._running: list[_Row] = []  # rows of self._batch, in order
        self._batch: PaddedBatch | None = None
        self._logits = None  # [rows, vocab]: each running row's next-token logits, not yet sampled
        self._pending: tuple[list[Job], ChunkedPrefill, bool] | None = None  # newcomers being prefilled chunk by chunk
        self._thread = threading.Thread(target=self._run, name="generation-worker", daemon=True)
        self._thread.start()

    @classmethod
    def from_args(cls, model, tokenizer, args: EngineArgs) -> "GenerationEngine":
        """The engine ``args`` describe, its context the model's (capped by ``args.max_model_len``)."""
        context = min(args.max_model_len or 10**9, context_length_of(model, tokenizer))
        return cls(model, tokenizer, context_length=context, decode=args.decode, max_queue=args.max_queue, max_running=args.max_running,
                   max_batch_tokens=args.max_batch_tokens, batch_window_ms=args.batch_window_ms, prefix_cache=args.prefix_cache,
                   prefill_chunk=args.prefill_chunk)

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        for source in (getattr(self.model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            for i in source if isinstance(source, (list, tuple)) else [source]:
                if i is not None and int(i) not in ids:
                    ids.append(int(i))
        return ids

    # -- called from the event loop ------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`Overloaded` when ``max_queue`` jobs already wait."""
        self.scheduler.submit(job)

    def retry_after(self) -> int:
        return self.scheduler.retry_after()

    @property
    def queued(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def running(self) -> int:
        """Jobs the worker holds: decoding, or being prefilled."""
        return len(self._running) + (len(self._pending[0]) if self._pending else 0)

    @property
    def busy(self) -> bool:
        return self.running > 0

    def close(self, timeout: float = 10.0) -> None:
        self.scheduler.close()
        self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        with self._torch.inference_mode():
            while self._wait_for_work():
                if self.decode != "dynamic":
                    self._serve_one()
                    continue
                try:
                    self._batch_step()
                except Exception as exc:  # a bug: fail the running rows, never the worker itself
                    for job in [row.job for row in self._running] + (self._pending[0] if self._pending else []):
                        self._fail(job, exc)
                    self._running, self._batch, self._logits, self._pending = [], None, None, None
        for row in self._running:  # shutting down
            self._finish(row, "cancelled")
        self._drop_pending()
        for job in self.scheduler.waiting:
            job.emit(("done", "cancelled", 0))

    def _wait_for_work(self) -> bool:
        """Sleep until something waits or runs; False when the engine is closing."""
        return self.scheduler.wait_for_work(lambda: bool(self._running or self._pending))

    def _batch_step(self) -> None:
        """One turn of continuous batching: admit, sample one token per row, retire, forward."""
        if not self._running and not self._pending and self.batch_window:
            time.sleep(self.batch_window)  # idle: let a burst of requests arrive together
        if self._pending is None:
            newcomers = self._admit(self._batch)
            if newcomers:
                self._start_prefill(newcomers)
        if self._pending is not None:
            self._prefill_step()  # one chunk; the newcomers join the batch after their last one
        if not self._running:
            return
        # self._logits holds every running row's next-token logits (from the last step or prefill).
        tokens = self._sample(self._logits)
        alive = self._advance(tokens)
        self._running = [self._running[i] for i in alive]
        if not alive:
            self._batch = self._logits = None
            return
        self._batch.keep(alive)
        next_tokens = tokens[self._torch.tensor(alive, device=tokens.device)]
        try:
            self._logits = self._batch.step(next_tokens)
            self.stats["steps"] += 1
        except Exception as exc:  # OOM or a bug: the cache is now unusable, fail this batch
            for row in self._running:
                self._fail(row.job, exc)
            self._running, self._batch, self._logits = [], None, None

    def _admit(self, batch: PaddedBatch | None) -> list[Job]:
        """Waiting jobs the scheduler lets join the batch, oldest first."""
        return self.scheduler.admit([r.job for r in self._running], batch.width if batch is not None else 0)

    def _start_prefill(self, jobs: list[Job]) -> None:
        """Lay the newcomers' prompts out for a (chunked) prefill, reusing a cached shared prefix."""
        prompts = [j.prompt_ids for j in jobs]
        try:
            prefix = self.prefixes.reusable(prompts)
            run = ChunkedPrefill(self.model, prompts, pad_id=self.pad_id, device=self.device, prefix=prefix, chunk=self.prefill_chunk)
        except Exception as exc:  # e.g. out of memory for these prompts: only they fail
            for job in jobs:
                self._fail(job, exc)
            return
        self._pending = (jobs, run, prefix is not None)

    def _prefill_step(self) -> None:
        """The next chunk of the pending prefill; after the last, the newcomers join the running batch.
        Newcomers whose clients all left are dropped between chunks, their work unfinished."""
        jobs, run, reused = self._pending
        if all(job.cancelled.is_set() for job in jobs):
            self._drop_pending()
            return
        try:
            fresh_logits = run.advance()
            self.stats["prefill_chunks"] += 1
        except Exception as exc:  # e.g. out of memory for these prompts: only they fail
            self._pending = None
            for job in jobs:
                self._fail(job, exc)
            return
        if fresh_logits is None:
            return
        self._pending = None
        prompts = [j.prompt_ids for j in jobs]
        self.stats["prefills"] += 1
        if reused:
            self.stats["prefix_hits"] += len(jobs)
        else:
            self.prefixes.learn(prompts, run.batch)
        self.prefixes.last_prompt = prompts[-1]
        self._join(jobs, run.batch, fresh_logits)

    def _drop_pending(self) -> None:
        """End the jobs being prefilled as cancelled (their clients left, or the engine is closing)."""
        for job in self._pending[0] if self._pending else []:
            self.scheduler.finished(job, "cancelled", 0)
            job.emit(("done", "cancelled", 0))
        self._pending = None

    def _join(self, jobs: list[Job], fresh: PaddedBatch, fresh_logits) -> None:
        """Merge prefilled newcomers into the running batch, each with its own stream and generator."""
        torch = self._torch
        now = time.monotonic()
        for job in jobs:
            generator = None
            if job.settings.do_sample:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(job.seed if job.seed is not None else secrets.randbits(63))
            self._running.append(_Row(job, TextStream(job, self.tokenizer, self.tokenizer_lock), generator, now))
        self.stats["peak_running"] = max(self.stats["peak_running"], len(self._running))
        if self._batch is None:
            self._batch, self._logits = fresh, fresh_logits
        else:
            self._batch.extend(fresh)
            self._logits = torch.cat([self._logits, fresh_logits], dim=0)

    def _sample(self, logits):
        """One token per row (see :func:`~imdb_llm.serve.sampler.choose_tokens`); a row that fails is retired alone."""
        return choose_tokens(logits, [(row.job, row.generator) for row in self._running], self._fail)

    def _advance(self, tokens) -> list[int]:
        """Hand each row its token; retire finished rows. Returns the indices of rows that go on."""
        alive = []
        for i, (row, token) in enumerate(zip(self._running, tokens.tolist())):
            job = row.job
            if row.failed:  # already told its client
                continue
            try:
                if job.cancelled.is_set():  # its client went away: the slot frees at once
                    self._finish(row, "cancelled")
                    continue
                row.stream.add(token)
                if row.stream.hit_stop or token in self.eos_ids:
                    self._finish(row, "stop")
                elif len(job.token_ids) >= job.max_new_tokens:
                    self._finish(row, "length")
                else:
                    alive.append(i)
            except Exception as exc:  # a broken emit callback or decode: retire this row only
                self._fail(job, exc)
        return alive

    def _finish(self, row: _Row, reason: str) -> None:
        job = row.job
        if reason != "cancelled":
            row.stream.flush()
        tokens = len(job.token_ids)
        job.emit(("done", reason, tokens))
        self.scheduler.finished(job, reason, tokens)
        self.stats["finished"] += 1

    def _fail(self, job: Job, exc: BaseException) -> None:
        self.history.append((job.id, "error", len(job.token_ids)))
        job.cancel()
        for row in self._running:
            if row.job is job:
                row.failed = True
        try:
            job.emit(("error", f"generation failed: {type(exc).__name__}: {exc}"))
        except Exception:
            pass  # the client side is broken too: nothing left to tell

    # -- the batch-1 path: model.generate with a static cache (and torch.compile) --------------
    def _serve_one(self) -> None:
        job = self.scheduler.pop()
        if job is None:
            return
        if job.cancelled.is_set():
            self.scheduler.cancel_waiting(job)
            return
        row = _Row(job, TextStream(job, self.tokenizer, self.tokenizer_lock), None, time.monotonic())
        self._running = [row]
        try:
            self._generate(row)
        except Exception as exc:  # a bug or OOM: tell this client, keep serving the others
            self._fail(job, exc)
        finally:
            self._running = []

    def generation_config(self, job: Job):
        """A per-request copy of the model's generation config with the request's sampling knobs."""
        return static_generation_config(self.model, job, eos_ids=self.eos_ids, pad_id=self.pad_id, cache_len=self.context_length,
                                        compile=self.decode == "compile")

    def _generate(self, row: _Row) -> None:
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        from imdb_llm.llm.generation import repetition_processor

        torch, job, stream = self._torch, row.job, row.stream

        class _Streamer:
            """``generate`` hands the prompt first, then one token per step."""

            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                for t in value.reshape(-1).tolist():
                    stream.add(int(t))

            def end(self):
                pass

        class _StopWhenAsked(StoppingCriteria):
            """Ends generation when a stop string appeared or the client went away."""

            def __call__(self, input_ids, scores, **kwargs):
                done = job.cancelled.is_set() or stream.hit_stop
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        if job.seed is not None:
            torch.manual_seed(job.seed)
        input_ids = torch.tensor([job.prompt_ids], dtype=torch.long, device=self.device)
        controls = repetition_processor(len(job.prompt_ids), job.settings.repetition_penalty, job.settings.no_repeat_ngram_size)
        self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=self.generation_config(job),
            streamer=_Streamer(),
            stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
            logits_processor=LogitsProcessorList([controls] if controls is not None else []),
        )
        if job.cancelled.is_set() and not stream.hit_stop:
            reason = "cancelled"
        elif stream.hit_stop or (job.token_ids and job.token_ids[-1] in self.eos_ids):
            reason = "stop"
        else:
            reason = "length"
        self._finish(row, reason)
