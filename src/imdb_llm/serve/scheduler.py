"""The server's waiting queue: admission limits, first come first served, and ``Retry-After``.

The :class:`~imdb_llm.serve.engine.GenerationEngine`'s worker asks the :class:`Scheduler` which
waiting jobs may join the running batch (:meth:`Scheduler.admit`); the event loop only calls
:meth:`Scheduler.submit`. A full queue raises :class:`Overloaded` (HTTP 503 with ``Retry-After``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from imdb_llm.llm.generation import GenerationDefaults


class Overloaded(Exception):
    """Too many requests are waiting; ``retry_after`` is a guess (seconds) at when to retry."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Job:
    """One chat completion: what to generate, and where to send the pieces."""

    prompt_ids: list[int]
    settings: GenerationDefaults = field(default_factory=GenerationDefaults)  # how to decode: the request over the model's defaults
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set by the caller; called from the worker thread with ("delta", text),
    # ("done", finish_reason, completion_tokens) or ("error", message).
    emit: Callable[[tuple], Any] | None = None
    # Filled by the engine: the generated token ids (tests compare them token for token).
    token_ids: list[int] = field(default_factory=list)
    submitted_at: float = 0.0

    @property
    def max_new_tokens(self) -> int:
        return self.settings.max_new_tokens

    def cancel(self) -> None:
        self.cancelled.set()


class Scheduler:
    """Jobs waiting for a place in the batch, and the rule that admits them.

    A batch may only grow while ``rows x (padded width + longest remaining answer)`` - the most
    KV-cache slots it can reach - stays within ``max_batch_tokens``, and to at most ``max_running``
    rows. ``history`` records (job id, finish reason, completion tokens) of every finished job.
    """

    def __init__(self, *, max_queue: int, max_running: int, max_batch_tokens: int, history: int = 1000):
        self.max_queue, self.max_running, self.max_batch_tokens = max_queue, max_running, max_batch_tokens
        self.waiting: deque[Job] = deque()
        self.cv = threading.Condition()
        self.closing = False
        self.history: deque = deque(maxlen=history)  # (job id, finish_reason, completion_tokens)
        self.durations: deque = deque(maxlen=32)  # recent request durations, for Retry-After

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`Overloaded` when ``max_queue`` jobs already wait."""
        with self.cv:
            if len(self.waiting) >= self.max_queue:  # first forget jobs whose clients already left
                gone = [j for j in self.waiting if j.cancelled.is_set()]
                self.waiting = deque(j for j in self.waiting if not j.cancelled.is_set())
                for j in gone:
                    self.history.append((j.id, "cancelled", 0))
                    j.emit(("done", "cancelled", 0))
            if len(self.waiting) >= self.max_queue:
                raise Overloaded(f"The server is overloaded: {len(self.waiting)} requests are already waiting, retry later.", self.retry_after())
            job.submitted_at = time.monotonic()
            self.waiting.append(job)
            self.cv.notify()

    def retry_after(self) -> int:
        """Seconds until a place is likely to free up: about one recent request's duration."""
        typical = sorted(self.durations)[len(self.durations) // 2] if self.durations else 1.0
        return max(1, min(60, math.ceil(typical)))

    def close(self) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify()

    def wait_for_work(self, has_running: Callable[[], bool]) -> bool:
        """Sleep until something waits or runs; False when the engine is closing."""
        with self.cv:
            while not self.closing and not self.waiting and not has_running():
                self.cv.wait()
            return not self.closing

    def cancel_waiting(self, job: Job) -> None:
        """Tell a job whose client left while it waited that it is over."""
        job.emit(("done", "cancelled", 0))
        self.history.append((job.id, "cancelled", 0))

    def pop(self) -> Job | None:
        """The oldest waiting job (the batch-1 path), or None."""
        with self.cv:
            return self.waiting.popleft() if self.waiting else None

    def admit(self, running_jobs: list[Job], width: int) -> list[Job]:
        """Take waiting jobs, oldest first, while the batch stays within its limits."""
        rows = len(running_jobs)
        longest = max((j.max_new_tokens - len(j.token_ids) for j in running_jobs), default=0)
        taken: list[Job] = []
        with self.cv:
            while self.waiting and rows < self.max_running:
                job = self.waiting[0]
                if job.cancelled.is_set():  # its client left while it waited
                    self.waiting.popleft()
                    self.cancel_waiting(job)
                    continue
                # The most KV slots this batch can reach: every row padded to the widest, grown
                # by the longest answer still to come (rows only leave, the width only grows by 1).
                w, lng = max(width, len(job.prompt_ids)), max(longest, job.max_new_tokens)
                if rows > 0 and (rows + 1) * (w + lng) > self.max_batch_tokens:
                    break  # FIFO: it waits for rows to leave (a lone job is always admitted)
                self.waiting.popleft()
                taken.append(job)
                rows, width, longest = rows + 1, w, lng
        return taken

    def finished(self, job: Job, reason: str, tokens: int) -> None:
        self.history.append((job.id, reason, tokens))
        self.durations.append(time.monotonic() - job.submitted_at)
