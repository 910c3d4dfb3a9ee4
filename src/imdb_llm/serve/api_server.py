"""The HTTP layer of the server: OpenAI's wire format, validation, SSE streaming, auth, limits.

Why it looks like this:

* ``POST /v1/chat/completions`` speaks the OpenAI wire format, so the official ``openai`` client,
  LangChain, curl scripts and the web page in ``static/`` all work unchanged.
* Everything here runs on the asyncio event loop and never touches the model: a request is
  validated, rendered with the chat template, turned into a :class:`~imdb_llm.serve.engine.Job`
  and handed to the :class:`~imdb_llm.serve.engine.GenerationEngine`, whose worker thread sends
  events back through ``loop.call_soon_threadsafe``. Waiting clients cost nothing.
* Bad input gets an OpenAI-style JSON error (``{"error": {"message", "type", "param", "code"}}``)
  with a 4xx status, never a traceback; a full queue gets 503 with ``Retry-After``.
* A client that disconnects cancels its job (the SSE generator's ``finally``, or a poll for
  non-streaming requests): the engine retires its row at the next step.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from fastapi import Request  # module level: FastAPI resolves endpoint annotations here

from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.llm.prompts import prompt_ids, require_chat_template
from imdb_llm.serve.engine import GenerationEngine, Job, Overloaded
from imdb_llm.serve.protocol import APIError, ChatCompletionRequest, chat_messages, error_response, param_path, usage_counts

STATIC_DIR = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = ("/", "/index.html", "/favicon.ico")  # the static page holds no data; the API does


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
                return await error_response(APIError(401, msg, code="invalid_api_key"))(scope, receive, send)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            too_big = APIError(413, f"Request body too large: the limit is {self.max_body_bytes} bytes.", code="request_too_large")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                return await error_response(too_big)(scope, receive, send)
            # Read the body ourselves (chunked uploads have no Content-Length), then replay it.
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_body_bytes:
                    return await error_response(too_big)(scope, receive, send)
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
# From request body to Job, and from engine events to responses
# --------------------------------------------------------------------------------------------
@dataclass
class ServerState:
    """What the endpoints need: the engine, the tokenizer, the per-request limits and the model's
    generation defaults (what a request that says nothing gets)."""

    engine: GenerationEngine
    tokenizer: Any
    model_name: str
    context: int
    max_tokens_cap: int
    defaults: GenerationDefaults
    created: int
    guard: Any = None  # a medical assistant's MedicalGuard: retrieved records before the question, safety rules after


def last_question(messages) -> str:
    """The last user message: what the safety rules read."""
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user" and isinstance(m.get("content"), str)), "")


def build_job(body: ChatCompletionRequest, state: ServerState) -> tuple[Job, int]:
    """Validate a request against the served model and its limits: ``(job, prompt_tokens)``."""
    if body.model != state.model_name:
        raise APIError(404, f"The model '{body.model}' does not exist: this server serves '{state.model_name}'.", param="model", code="model_not_found")
    if body.n != 1:
        raise APIError(400, "Only n=1 is supported.", param="n")
    messages = chat_messages(body)
    if state.guard is not None:
        messages = state.guard.ground_messages(messages)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError(400, "'stop' takes up to 4 non-empty strings.", param="stop")
    try:
        with state.engine.tokenizer_lock:  # the worker decodes with the same (not thread-safe) tokenizer
            ids = prompt_ids(state.tokenizer, messages)
    except Exception as exc:  # templates raise on e.g. non-alternating roles
        raise APIError(400, f"Cannot apply the chat template: {exc}", param="messages") from None
    n_prompt, context = len(ids), state.context
    requested = body.max_completion_tokens or body.max_tokens
    if requested is not None and requested > state.max_tokens_cap:
        raise APIError(400, f"max_tokens is too large: {requested}. This server allows at most {state.max_tokens_cap} completion tokens.", param="max_tokens", code="max_tokens_too_large")
    if n_prompt >= context:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, your messages resulted in {n_prompt} tokens.", param="messages", code="context_length_exceeded")
    if requested is not None and n_prompt + requested > context:
        raise APIError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested {n_prompt + requested} tokens ({n_prompt} in the messages, {requested} in the completion).",
            param="max_tokens",
            code="context_length_exceeded",
        )
    max_new_tokens = requested or min(state.defaults.max_new_tokens, state.max_tokens_cap, context - n_prompt)
    return Job(prompt_ids=ids, settings=body.to_settings(state.defaults, max_new_tokens), stop=stop, seed=body.seed), n_prompt


DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there


async def collect(job: Job, events: asyncio.Queue, prompt_tokens: int, request: Request, state: ServerState, question: str = ""):
    """A non-streaming answer: gather the deltas (through the safety rules, when guarded).

    The connection is checked on a clock, not only when no token arrives: a client that leaves while
    tokens keep coming (a long answer, a client-side timeout) gets its job cancelled within
    ``DISCONNECT_POLL_S``, freeing its KV slot for everyone else."""
    from fastapi.responses import JSONResponse

    loop = asyncio.get_running_loop()
    parts: list[str] = []
    next_check = loop.time() + DISCONNECT_POLL_S
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                event = None
            if loop.time() >= next_check:
                next_check = loop.time() + DISCONNECT_POLL_S
                if await request.is_disconnected():
                    return JSONResponse({}, status_code=499)
            if event is None:
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
        "model": state.model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _finish(state, question, "".join(parts))}, "logprobs": None,
                     "finish_reason": reason}],
        "usage": usage_counts(prompt_tokens, tokens),
        "system_fingerprint": None,
    }


def _finish(state: ServerState, question: str, answer: str) -> str:
    return state.guard.finish(question, answer) if state.guard is not None else answer


async def sse(job: Job, events: asyncio.Queue, prompt_tokens: int, include_usage: bool, model_name: str, state: ServerState | None = None,
              question: str = "") -> AsyncIterator[str]:
    """A streaming answer as Server-Sent Events: role chunk, content chunks, finish chunk, [DONE]. When the
    safety rules act on this question (a notice first, a sentence out), the answer is held back and sent
    as one chunk once checked: nothing unsafe is shown and then taken back."""
    created_at = int(time.time())
    hold = state is not None and state.guard is not None and state.guard.decision(question).changes_answer
    held: list[str] = []

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
                if hold:
                    held.append(event[1])
                else:
                    yield chunk({"content": event[1]})
            elif event[0] == "error":
                yield f"data: {json.dumps(APIError(500, event[1], type='server_error').body())}\n\n"
                break
            else:
                _, reason, tokens = event
                if hold:
                    yield chunk({"content": _finish(state, question, "".join(held))})
                yield chunk({}, finish_reason=reason)
                if include_usage:
                    yield chunk({}, usage=usage_counts(prompt_tokens, tokens), choices=False)
                break
        yield "data: [DONE]\n\n"
    finally:
        # Reached on normal end and also when Starlette cancels us because the client
        # disconnected: the engine sees the flag at the next step and frees the row.
        job.cancel()


def _install_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error_response(APIError(415, f"Content-Type must be application/json, got '{content_type or 'none'}'.",
                                           code="unsupported_media_type"))
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # loc holds the byte offset, not a field
            offset = first.get("loc", ("body", "?"))[-1]
            return error_response(APIError(400, f"Invalid JSON in the request body at byte {offset}: {first.get('ctx', {}).get('error', 'malformed')}."))
        param = param_path(first.get("loc", ()))
        message = f"Invalid request: {param + ': ' if param else ''}{first.get('msg', 'malformed body')}"
        return error_response(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(APIError(exc.status_code, str(exc.detail), code=code))


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------
def page_security_headers(page: str) -> dict[str, str]:
    """Headers for the chat page: a Content-Security-Policy that allows only this page's own inline
    script and style (by hash) and requests to this server, no framing, no MIME sniffing, no referrer.
    An injected ``<script>`` or a page that frames this one to trick a user is refused by the browser."""
    import base64
    import hashlib

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks) or "'none'"

    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _install_info_routes(app, state: ServerState, decode: str, web: bool) -> None:
    """GET /health, /v1/models (the model card, with the generation defaults the web page starts from) and the page."""
    from fastapi.responses import HTMLResponse

    engine, model_name, context = state.engine, state.model_name, state.context

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "queued": engine.queued, "running": engine.running, "busy": engine.busy,
                "max_running": engine.scheduler.max_running, "decode": decode, "context_length": context, "stats": engine.stats}

    def _model_card():
        return {"id": model_name, "object": "model", "created": state.created, "owned_by": "imdb-llm", "context_length": context,
                "generation_defaults": state.defaults.to_dict()}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [_model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return _model_card()

    if web:
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        headers = page_security_headers(page)

        @app.get("/", include_in_schema=False)
        async def index():
            return HTMLResponse(page, headers=headers)


def create_app(
    engine: GenerationEngine,
    *,
    model_name: str,
    api_key: str | None = None,
    max_tokens_cap: int = 2048,
    default_max_tokens: int = 512,
    max_body_bytes: int = 1_000_000,
    web: bool = True,
    generation_defaults: GenerationDefaults | None = None,
    guard=None,
):
    """Build the FastAPI app around a running :class:`GenerationEngine` (built from
    :class:`~imdb_llm.serve.engine.EngineArgs` by ``GenerationEngine.from_args``), as vLLM's server does.

    ``max_tokens_cap`` caps ``max_tokens``; ``generation_defaults`` (serve.py passes the model's) fill what a
    request leaves out; without them, OpenAI's (temperature 1) and ``default_max_tokens``. ``guard`` (a
    medical assistant's :class:`~imdb_llm.llm.med.guard.MedicalGuard`) grounds every question and checks
    every answer, as chat and the evaluation do. The app closes the engine when it shuts down.
    """
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    try:
        require_chat_template(engine.tokenizer, "serve a chat/instruct model (or add a template)")
    except Exception:
        engine.close()
        raise
    context, decode, tokenizer = engine.context_length, engine.decode, engine.tokenizer
    defaults = generation_defaults or GenerationDefaults(max_new_tokens=default_max_tokens, do_sample=True, source="OpenAI's defaults")
    state = ServerState(engine, tokenizer, model_name, context, max_tokens_cap, defaults, int(time.time()), guard)

    @asynccontextmanager
    async def lifespan(app):
        yield
        engine.close()

    app = FastAPI(title="imdb-llm chat server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.model_name = model_name
    app.state.context_length = context
    _install_error_handlers(app)

    _install_info_routes(app, state, decode, web)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        job, prompt_tokens = build_job(body, state)
        question = last_question(chat_messages(body))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event):  # runs in the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is gone (server shutting down)
                job.cancel()

        job.emit = emit
        try:
            engine.submit(job)
        except Overloaded as exc:
            raise APIError(503, str(exc), type="server_error", code="server_overloaded", retry_after=exc.retry_after) from None
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                sse(job, events, prompt_tokens, include_usage, model_name, state, question),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await collect(job, events, prompt_tokens, request, state, question)

    app.add_middleware(_GuardMiddleware, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start uvicorn on ``host:port`` (0 = any free port) in a thread; yield the base URL (tests, benchmarks)."""
    import threading

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
