"""An OpenAI-compatible chat server for any causal LM with a chat template (ChatGLM2 included).

Why it looks like this:

* ``POST /v1/chat/completions`` speaks the OpenAI wire format, so the official ``openai`` client,
  LangChain, curl scripts and the web page in ``static/`` all work unchanged.
* One model, one GPU: requests go into a queue served by ONE generation thread, so concurrent
  clients never race on the model or its KV cache. (For batched multi-GPU serving use vLLM,
  see docs/serving.md.)
* Every answer is streamed token by token out of ``model.generate`` through a small streamer; the
  same loop checks the ``stop`` strings and a cancel flag, so a client that disconnects stops its
  generation on the next token instead of burning the GPU for nobody.
* Bad input gets an OpenAI-style JSON error (``{"error": {"message", "type", "param", "code"}}``)
  with a 4xx status, never a traceback.

``create_app(model, tokenizer, ...)`` builds the FastAPI app; ``scripts/serve.py`` is the CLI.
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fastapi import Request  # module level: FastAPI resolves endpoint annotations here
from pydantic import BaseModel, ConfigDict, Field

STATIC_DIR = Path(__file__).resolve().parent / "static"
ALLOWED_ROLES = ("system", "developer", "user", "assistant")
PUBLIC_PATHS = ("/", "/index.html", "/favicon.ico")  # the static page holds no data; the API does


# --------------------------------------------------------------------------------------------
# Errors in OpenAI's shape
# --------------------------------------------------------------------------------------------
class APIError(Exception):
    """An error the client caused (or a busy server), returned as OpenAI-style JSON."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _error_response(exc: APIError):
    from fastapi.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


# --------------------------------------------------------------------------------------------
# Request schema (the subset of OpenAI's we implement; unknown fields are accepted and ignored,
# as OpenAI-compatible servers usually do, so newer clients keep working)
# --------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    seed: int | None = None


# --------------------------------------------------------------------------------------------
# The generation worker
# --------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One chat completion: what to generate, and where to send the pieces."""

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Filled by the engine: called from the worker thread with ("delta", text),
    # ("done", finish_reason, completion_tokens) or ("error", message).
    emit: Any = None

    def cancel(self) -> None:
        self.cancelled.set()


class _JobStreamer:
    """Receives token ids from ``generate`` and turns them into safe-to-send text deltas.

    Text is re-decoded from all generated ids each step (byte-level BPE pieces only make sense
    together), and held back while it ends in an incomplete UTF-8 character or in something that
    could still grow into a stop string.
    """

    def __init__(self, job: Job, tokenizer, lock: threading.Lock):
        self.job, self.tokenizer, self.lock = job, tokenizer, lock
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""
        self.hit_stop = False
        self._prompt_seen = False
        self._max_stop = max((len(s) for s in job.stop), default=0)

    # BaseStreamer protocol ------------------------------------------------------------------
    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands us the prompt
            self._prompt_seen = True
            return
        if self.hit_stop:
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        with self.lock:
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self._emit_safe(final=False)

    def end(self) -> None:
        pass  # the engine flushes after generate() returns, when it knows the finish reason

    # ----------------------------------------------------------------------------------------
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

    def flush(self) -> None:
        self._emit_safe(final=True)


class GenerationEngine:
    """A queue of jobs and the single thread that runs ``model.generate`` on them, one at a time.

    ``decode`` picks the KV cache: ``"dynamic"`` (transformers' default), ``"static"`` (a
    preallocated cache of ``context_length`` slots: fixed shapes) or ``"compile"`` (static cache +
    ``torch.compile`` of the forward, with CUDA graphs on GPU: the fast path for batch-1 decoding).
    """

    def __init__(self, model, tokenizer, *, context_length: int, decode: str = "dynamic", max_queue: int = 256, history: int = 1000):
        import torch

        if decode not in ("dynamic", "static", "compile"):
            raise ValueError(f"decode must be dynamic, static or compile, not {decode!r}")
        self.model, self.tokenizer = model, tokenizer
        self.context_length, self.decode = context_length, decode
        self.device = next(model.parameters()).device
        self.tokenizer_lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.history: deque = deque(maxlen=history)  # (job id, finish_reason, completion_tokens)
        self.busy = False
        self.eos_ids = self._eos_ids()
        self._torch = torch
        self._thread = threading.Thread(target=self._run, name="generation-worker", daemon=True)
        self._thread.start()

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        for source in (getattr(self.model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            for i in source if isinstance(source, (list, tuple)) else [source]:
                if i is not None and int(i) not in ids:
                    ids.append(int(i))
        return ids

    # Called from the event loop --------------------------------------------------------------
    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise APIError(503, "The server is overloaded: too many queued requests, retry later.", type="server_error", code="server_overloaded") from None

    def close(self, timeout: float = 10.0) -> None:
        self.jobs.put(None)
        self._thread.join(timeout)

    # The worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if job.cancelled.is_set():  # its client left while it waited in the queue
                self._finish(job, "cancelled", 0)
                continue
            self.busy = True
            try:
                self._generate(job)
            except Exception as exc:  # a bug or OOM: tell this client, keep serving the others
                job.emit(("error", f"generation failed: {type(exc).__name__}: {exc}"))
                self.history.append((job.id, "error", 0))
            finally:
                self.busy = False

    def generation_config(self, job: Job):
        """A per-request copy of the model's generation config with the request's sampling knobs."""
        import copy

        cfg = copy.deepcopy(self.model.generation_config)
        cfg.max_new_tokens = job.max_new_tokens
        cfg.max_length = None
        cfg.min_new_tokens = None
        cfg.do_sample = job.temperature > 0
        if cfg.do_sample:
            cfg.temperature, cfg.top_p = job.temperature, job.top_p
        else:
            cfg.temperature, cfg.top_p = None, None
        cfg.top_k = None  # OpenAI has no top-k: don't inherit the library default of 50
        cfg.num_beams, cfg.num_return_sequences = 1, 1
        cfg.eos_token_id = self.eos_ids or None
        cfg.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.eos_ids or [None])[0]
        if self.decode in ("static", "compile"):
            cfg.cache_implementation = "static"
            # One cache size for every request -> one set of shapes -> no recompiles (newer
            # transformers honour this; older ones size the cache per request).
            cfg.max_cache_len = self.context_length
        if self.decode == "compile":
            from transformers import CompileConfig

            on_gpu = self.device.type == "cuda"
            cfg.compile_config = CompileConfig(fullgraph=False, mode="reduce-overhead" if on_gpu else "default")
            cfg.compile_config._compile_all_devices = True  # --compile means compile, on CPU too
        else:
            cfg.disable_compile = True
        return cfg

    def _generate(self, job: Job) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self._torch
        streamer = _JobStreamer(job, self.tokenizer, self.tokenizer_lock)

        class _StopWhenAsked(StoppingCriteria):
            """Ends generation when a stop string appeared or the client went away."""

            def __call__(self, input_ids, scores, **kwargs):
                done = job.cancelled.is_set() or streamer.hit_stop
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        if job.seed is not None:
            torch.manual_seed(job.seed)
        input_ids = torch.tensor([job.prompt_ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self.generation_config(job),
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
            )
        if job.cancelled.is_set() and not streamer.hit_stop:
            reason = "cancelled"
        elif streamer.hit_stop or (streamer.ids and streamer.ids[-1] in self.eos_ids):
            reason = "stop"
        else:
            reason = "length"
        streamer.flush()
        self._finish(job, reason, len(streamer.ids))

    def _finish(self, job: Job, reason: str, tokens: int) -> None:
        self.history.append((job.id, reason, tokens))
        job.emit(("done", reason, tokens))


# --------------------------------------------------------------------------------------------
# A pure ASGI guard: body size limit and bearer-token auth, before FastAPI parses anything
# --------------------------------------------------------------------------------------------
class _GuardMiddleware:
    """Rejects oversized bodies (413) and, with an API key, unauthenticated requests (401).

    Written as raw ASGI (not ``BaseHTTPMiddleware``) so streaming responses and client-disconnect
    detection pass through untouched.
    """

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.api_key and scope["path"] not in PUBLIC_PATHS and scope["method"] != "OPTIONS":
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), self.api_key.encode()):
                msg = "Missing API key: send 'Authorization: Bearer <key>'." if not auth else "Incorrect API key provided."
                return await _error_response(APIError(401, msg, code="invalid_api_key"))(scope, receive, send)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            too_big = APIError(413, f"Request body too large: the limit is {self.max_body_bytes} bytes.", code="request_too_large")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                return await _error_response(too_big)(scope, receive, send)
            # Read the body ourselves (chunked uploads have no Content-Length), then replay it.
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_body_bytes:
                    return await _error_response(too_big)(scope, receive, send)
                chunks.append(body)
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                return await receive()  # later calls wait for http.disconnect

            return await self.app(scope, replay, send)
        return await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------
def context_length_of(model, tokenizer=None) -> int:
    """The longest sequence the model was built for (``max_position_embeddings`` / ``seq_length``)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def create_app(
    model,
    tokenizer,
    *,
    model_name: str,
    api_key: str | None = None,
    max_model_len: int | None = None,
    max_tokens_cap: int = 2048,
    default_max_tokens: int = 512,
    max_body_bytes: int = 1_000_000,
    max_queue: int = 256,
    decode: str = "dynamic",
    web: bool = True,
):
    """Build the FastAPI app around an already-loaded model and tokenizer.

    ``max_model_len`` caps the context (defaults to the model's own); ``max_tokens_cap`` caps
    ``max_tokens`` per request; ``decode`` is ``dynamic`` / ``static`` / ``compile`` (see
    :class:`GenerationEngine`). The engine is reachable as ``app.state.engine``.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if not getattr(tokenizer, "chat_template", None):
        from .cli import UserError

        raise UserError("the tokenizer has no chat template: serve a chat/instruct model (or add a template)")
    context = min(max_model_len or 10**9, context_length_of(model, tokenizer))
    engine = GenerationEngine(model, tokenizer, context_length=context, decode=decode, max_queue=max_queue)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        yield
        engine.close()

    app = FastAPI(title="imdb-llm chat server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.model_name = model_name
    app.state.context_length = context

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"Invalid request: {param + ': ' if param else ''}{first.get('msg', 'malformed body')}"
        return _error_response(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error_response(APIError(exc.status_code, str(exc.detail), code=code))

    # -- endpoints -----------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "queued": engine.jobs.qsize(), "busy": engine.busy, "decode": decode, "context_length": context}

    def _model_card():
        return {"id": model_name, "object": "model", "created": created, "owned_by": "imdb-llm", "context_length": context}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [_model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return _model_card()

    if web:

        @app.get("/", include_in_schema=False)
        async def index():
            return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        job, prompt_tokens = _make_job(body)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event):  # runs in the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is gone (server shutting down)
                job.cancel()

        job.emit = emit
        engine.submit(job)
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _sse(job, events, prompt_tokens, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _collect(job, events, prompt_tokens, request)

    # -- helpers -------------------------------------------------------------------------------
    def _make_job(body: ChatCompletionRequest) -> tuple[Job, int]:
        if body.model != model_name:
            raise APIError(404, f"The model '{body.model}' does not exist: this server serves '{model_name}'.", param="model", code="model_not_found")
        if not body.messages:
            raise APIError(400, "'messages' must contain at least one message.", param="messages", code="empty_messages")
        if body.n != 1:
            raise APIError(400, "Only n=1 is supported.", param="n")
        messages = []
        for i, msg in enumerate(body.messages):
            if msg.role not in ALLOWED_ROLES:
                raise APIError(400, f"Invalid role '{msg.role}' in messages[{i}]: expected one of {', '.join(ALLOWED_ROLES)}.", param=f"messages[{i}].role", code="invalid_role")
            if isinstance(msg.content, list):
                if any(p.type != "text" or p.text is None for p in msg.content):
                    raise APIError(400, f"messages[{i}].content: only text parts are supported.", param=f"messages[{i}].content")
                content = "".join(p.text for p in msg.content)
            else:
                content = msg.content or ""
            if not content and msg.role != "assistant":
                raise APIError(400, f"messages[{i}].content must not be empty.", param=f"messages[{i}].content", code="empty_content")
            messages.append({"role": "system" if msg.role == "developer" else msg.role, "content": content})
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise APIError(400, "'stop' takes up to 4 non-empty strings.", param="stop")
        try:
            with engine.tokenizer_lock:
                prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        except Exception as exc:  # templates raise on e.g. non-alternating roles
            raise APIError(400, f"Cannot apply the chat template: {exc}", param="messages") from None
        n_prompt = len(prompt_ids)
        requested = body.max_completion_tokens or body.max_tokens
        if requested is not None and requested > max_tokens_cap:
            raise APIError(400, f"max_tokens is too large: {requested}. This server allows at most {max_tokens_cap} completion tokens.", param="max_tokens", code="max_tokens_too_large")
        if n_prompt >= context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, your messages resulted in {n_prompt} tokens.", param="messages", code="context_length_exceeded")
        if requested is not None and n_prompt + requested > context:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested {n_prompt + requested} tokens ({n_prompt} in the messages, {requested} in the completion).",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_new = requested or min(default_max_tokens, max_tokens_cap, context - n_prompt)
        job = Job(
            prompt_ids=list(prompt_ids),
            max_new_tokens=max_new,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=stop,
            seed=body.seed,
        )
        return job, n_prompt

    def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}

    async def _collect(job: Job, events: asyncio.Queue, prompt_tokens: int, request: Request):
        parts: list[str] = []
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return JSONResponse({}, status_code=499)
                    continue
                if event[0] == "delta":
                    parts.append(event[1])
                elif event[0] == "error":
                    raise APIError(500, event[1], type="server_error")
                else:
                    _, reason, tokens = event
                    break
        finally:
            job.cancel()  # no-op when it finished; stops the generation when we leave early
        return {
            "id": job.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)}, "logprobs": None, "finish_reason": reason}],
            "usage": _usage(prompt_tokens, tokens),
            "system_fingerprint": None,
        }

    async def _sse(job: Job, events: asyncio.Queue, prompt_tokens: int, include_usage: bool) -> Iterator[str]:
        created_at = int(time.time())

        def chunk(delta: dict, finish_reason=None, usage=None, choices=True) -> str:
            data = {
                "id": job.id,
                "object": "chat.completion.chunk",
                "created": created_at,
                "model": model_name,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else [],
            }
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                event = await events.get()
                if event[0] == "delta":
                    yield chunk({"content": event[1]})
                elif event[0] == "error":
                    yield f"data: {json.dumps(APIError(500, event[1], type='server_error').body())}\n\n"
                    break
                else:
                    _, reason, tokens = event
                    yield chunk({}, finish_reason=reason)
                    if include_usage:
                        yield chunk({}, usage=_usage(prompt_tokens, tokens), choices=False)
                    break
            yield "data: [DONE]\n\n"
        finally:
            # Reached on normal end and also when Starlette cancels us because the client
            # disconnected: the worker sees the flag at the next token and stops.
            job.cancel()

    app.add_middleware(_GuardMiddleware, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


# --------------------------------------------------------------------------------------------
# Running the app in a background thread (tests, the screenshot script)
# --------------------------------------------------------------------------------------------
@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start uvicorn on ``host:port`` (0 = any free port) in a thread; yield the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(15)


# --------------------------------------------------------------------------------------------
# A tiny random chat model, for tests and offline demos (answers are gibberish, shapes are real)
# --------------------------------------------------------------------------------------------
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_chat_model(out_dir: str | Path, *, seed: int = 0, context_length: int = 256) -> Path:
    """Save a tiny random ``LlamaForCausalLM`` + byte-level BPE tokenizer with a ChatML template.

    Everything is built locally (no hub): the tokenizer is trained on a few sentences.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "This movie was great, I loved the acting and the story.",
        "A terrible film: boring plot, bad dialogue, and far too long.",
        "user assistant system: hello, how are you? I am fine, thank you.",
        "The quick brown fox jumps over the lazy dog. 0123456789",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    tok.model_max_length = context_length
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger random logits: a varied (not constant) greedy answer
        model.lm_head.weight.normal_(0.0, 1.0)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    return out
