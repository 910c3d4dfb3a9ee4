"""The OpenAI-compatible server, driven by the official ``openai`` client over loopback.

The model is a tiny random Llama with a ChatML template (``make_tiny_chat_model``): its answers
are gibberish, so tests use greedy decoding and check relations between answers (same prompt ->
same text, stop -> a prefix, streaming == non-streaming), never hard-coded text.
"""

import asyncio
import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.serve.api_server import create_app, serve_in_thread
from imdb_llm.serve.engine import EngineArgs, GenerationEngine, Job
from tiny_models import make_tiny_chat_model

MODEL = "tiny"
CONTEXT = 256
CAP = 200
BODY_LIMIT = 20_000
HELLO = [{"role": "user", "content": "hello, how are you?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    path = make_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"), context_length=CONTEXT)
    return load_causal_lm(str(path)).eval(), load_tokenizer(str(path)), path


@pytest.fixture(scope="module")
def server(tiny):
    model, tok, _ = tiny
    app = create_app(GenerationEngine.from_args(model, tok, EngineArgs()), model_name=MODEL, max_tokens_cap=CAP, max_body_bytes=BODY_LIMIT)
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def greedy(client, messages=HELLO, **kw):
    kw.setdefault("max_tokens", 24)
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)


def stream_text(client, messages=HELLO, **kw):
    kw.setdefault("max_tokens", 24)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(server[0] + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL and health["context_length"] == CONTEXT


def test_non_streaming_counts_usage(client, tiny):
    _, tok, _ = tiny
    r = greedy(client, max_tokens=16)
    choice = r.choices[0]
    assert r.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason in ("length", "stop")
    prompt = tok.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert greedy(client, max_tokens=16).choices[0].message.content == choice.message.content  # greedy is deterministic


def test_streaming_equals_non_streaming_and_ends_with_done(server, client):
    full = greedy(client).choices[0].message.content
    text, chunks = stream_text(client, stream_options={"include_usage": True})
    assert text == full
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("length", "stop")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    # The raw wire format: SSE events, the last one "data: [DONE]".
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", server[0] + "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("length", "stop")


def test_stop_sequences_cut_the_answer(client):
    full = greedy(client, max_tokens=32).choices[0].message.content
    # Any short substring from the middle of the greedy answer is a stop string it must hit.
    candidates = [full[i : i + 2] for i in range(3, len(full) - 2) if full[i : i + 2].isascii() and full[i : i + 2].strip()]
    assert candidates, f"the tiny model's answer is too short for this test: {full!r}"
    stop = candidates[0]
    expected = full[: full.find(stop)]
    r = greedy(client, max_tokens=32, stop=stop)
    assert r.choices[0].message.content == expected and stop not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    text, chunks = stream_text(client, max_tokens=32, stop=["never-appears-xyz", stop])
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_auth_on(tiny):
    model, tok, _ = tiny
    app = create_app(GenerationEngine.from_args(model, tok, EngineArgs()), model_name=MODEL, api_key="s3cret")
    with serve_in_thread(app) as url:
        for key in ("wrong", ""):
            bad = openai.OpenAI(base_url=url + "/v1", api_key=key or "x", max_retries=0)
            if not key:  # no Authorization header at all
                bad = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, default_headers={"Authorization": ""})
            with pytest.raises(openai.AuthenticationError) as err:
                bad.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
            assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
        assert httpx.get(url + "/health").status_code == 401
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/").status_code == 200  # the static page carries no data
        good = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0).choices[0].message.content is not None
        assert httpx.get(url + "/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_page_allows_only_its_own_script_and_style(server):
    """The CSP names the page's inline script and style by hash: the served page's blocks must hash to
    exactly those (else the browser would refuse its own page), and nothing else may run or frame it."""
    import base64
    import hashlib
    import re

    r = httpx.get(server[0] + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    for tag in ("script", "style"):
        [block] = re.findall(rf"<{tag}>(.*?)</{tag}>", r.text, flags=re.DOTALL)
        assert csp[f"{tag}-src"] == f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'" and csp["connect-src"] == "'self'"
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # > 256 tokens, < 20 kB


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"model": "gpt-4o"}, 404, "model_not_found"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_role"),
        ({"messages": []}, 400, "empty_messages"),
        ({"max_tokens": CAP + 1}, 400, "max_tokens_too_large"),
        ({"messages": [{"role": "user", "content": LONG}]}, 400, "context_length_exceeded"),
        ({"max_tokens": CAP, "messages": [{"role": "user", "content": " ".join(["fox"] * 100)}]}, 400, "context_length_exceeded"),
        ({"messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 1)}]}, 413, "request_too_large"),
        ({"temperature": 3.5}, 400, None),
    ],
    ids=["unknown-model", "bad-role", "empty-messages", "max-tokens-cap", "prompt-too-long", "prompt-plus-completion", "body-too-big", "bad-temperature"],
)
def test_bad_requests_get_openai_errors(client, kwargs, status, code):
    request = {"model": MODEL, "messages": HELLO, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(**request)
    assert err.value.status_code == status
    assert err.value.body["message"] and err.value.type in ("invalid_request_error",)
    if code:
        assert err.value.code == code


def test_raw_bad_bodies(server):
    url = server[0] + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    # A chunked upload (no Content-Length) over the limit is refused too.
    r = httpx.post(url, content=iter([b"x" * 8192] * 4), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_errors_say_what_is_wrong(server):
    url = server[0] + "/v1/chat/completions"

    def post(body=None, **kw):
        r = httpx.post(url, json=body, **kw) if body is not None else httpx.post(url, **kw)
        return r.status_code, r.json()["error"]

    status, err = post(content=b'{"model": "tiny", "messages": [}', headers={"Content-Type": "application/json"})
    assert status == 400 and err["param"] is None and err["message"].startswith("Invalid JSON in the request body at byte ")
    status, err = post(content=b'{"model": "tiny"}', headers={"Content-Type": "text/plain"})
    assert status == 415 and "Content-Type must be application/json, got 'text/plain'" in err["message"]
    # A lone surrogate is invalid text, said as such (not a chat-template failure).
    status, err = post(content=b'{"model": "tiny", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
                       headers={"Content-Type": "application/json"})
    assert status == 400 and err["code"] == "invalid_text" and err["param"] == "messages[0].content"
    # Strict types: OpenAI rejects a string where a number or a boolean belongs; an integer temperature is fine.
    for field, value in (("stream", "yes"), ("temperature", "0.5"), ("max_tokens", "8"), ("max_tokens", 8.0)):
        status, err = post({"model": MODEL, "messages": HELLO, field: value})
        assert status == 400 and err["param"] == field, (field, value, err)
    assert httpx.post(url, json={"model": MODEL, "messages": HELLO, "temperature": 0, "max_tokens": 2}).status_code == 200
    # Field paths are written as OpenAI writes them.
    status, err = post({"model": MODEL, "messages": [{"role": "user", "content": 5}]})
    assert status == 400 and err["param"].startswith("messages[0].content")
    # Tools: said plainly, for the role and for the request field.
    status, err = post({"model": MODEL, "messages": HELLO + [{"role": "tool", "content": "42", "tool_call_id": "x"}]})
    assert status == 400 and err["code"] == "tools_not_supported" and err["param"] == "messages[1].role"
    status, err = post({"model": MODEL, "messages": HELLO, "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert status == 400 and err["code"] == "tools_not_supported" and err["param"] == "tools"


def test_client_disconnect_stops_generation(server, tiny):
    url, app = server
    model = tiny[0]
    engine = app.state.engine
    slow = model.register_forward_pre_hook(lambda *a: time.sleep(0.03))  # >= 6 s for 200 tokens
    try:
        body = {"model": MODEL, "messages": HELLO, "max_tokens": CAP, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as resp:
            lines = resp.iter_lines()
            first = json.loads(next(line for line in lines if line)[6:])
            job_id = first["id"]
            next(line for line in lines if line)  # one content chunk, then hang up
        deadline = time.time() + 20
        while time.time() < deadline and not any(h[0] == job_id for h in engine.history):
            time.sleep(0.05)
    finally:
        slow.remove()
    [(_, reason, tokens)] = [h for h in engine.history if h[0] == job_id]
    assert reason == "cancelled" and tokens < CAP // 2


def test_non_streaming_client_that_leaves_mid_answer_is_cancelled(server, tiny):
    """Tokens keep arriving while the client is gone: the job must still stop within about a poll."""
    url, app = server
    model, engine = tiny[0], app.state.engine
    before = len(engine.history)
    slow = model.register_forward_pre_hook(lambda *a: time.sleep(0.03))  # ~6 s for the 200-token answer
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "a long answer please"}], "max_tokens": CAP, "temperature": 0}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.0))
        left = time.time()
        while time.time() < left + 20 and len(engine.history) == before:
            time.sleep(0.02)
        stopped_after = time.time() - left
    finally:
        slow.remove()
    [(_, reason, tokens)] = list(engine.history)[before:]
    assert reason == "cancelled" and tokens < CAP // 2 and stopped_after < 2.0


def test_32_concurrent_streams_all_complete(server, client):
    prompts = [[{"role": "user", "content": f"review number {i}: a fine film"}] for i in range(4)]
    expected = [greedy(client, p, max_tokens=8).choices[0].message.content for p in prompts]
    aclient = openai.AsyncOpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=120)

    async def one(i):
        stream = await aclient.chat.completions.create(model=MODEL, messages=prompts[i % 4], max_tokens=8, temperature=0, stream=True)
        text, finish = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return i, text, finish

    async def run_all():
        try:
            return await asyncio.gather(*(one(i) for i in range(32)), return_exceptions=True)
        finally:
            await aclient.close()

    results = asyncio.run(run_all())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert all(finish in ("length", "stop") for _, _, finish in results)  # every stream finished
    assert all(text == expected[i % 4] for i, text, _ in results)  # and got its own answer, no cross-talk


def _run_engine(engine, prompt_ids, n=12):
    done, parts = threading.Event(), []

    def emit(event):
        if event[0] == "delta":
            parts.append(event[1])
        else:
            parts.append(event)
            done.set()

    engine.submit(Job(prompt_ids=prompt_ids, settings=GenerationDefaults(max_new_tokens=n), emit=emit))
    assert done.wait(60)
    return parts


def test_static_cache_decodes_like_dynamic(tiny):
    """The --static_cache / --compile path preallocates the KV cache: same greedy tokens."""
    model, tok, _ = tiny
    ids = tok("hello there", add_special_tokens=False)["input_ids"]
    outs = {}
    for decode in ("dynamic", "static"):
        engine = GenerationEngine(model, tok, context_length=CONTEXT, decode=decode)
        try:
            outs[decode] = _run_engine(engine, ids)
        finally:
            engine.close()
    assert outs["static"] == outs["dynamic"] and outs["static"][-1][0] == "done"


def test_cli_rejects_bad_input(repo_root, tmp_path):
    out = subprocess.run(
        [sys.executable, "scripts/serve.py", "--model", str(tmp_path / "missing"), "--compile", "--static_cache"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1


def test_a_medical_guard_grounds_the_question_and_guards_the_answer_streamed_or_not(tiny):
    """The server runs the same MedicalGuard as chat and the evaluation: the prompt carries the retrieved
    record, a red-flag question gets the emergency notice first, streamed or not, and both agree."""
    from imdb_llm.llm.med.guard import MedicalGuard
    from imdb_llm.llm.med.retrieval import KnowledgeIndex, RetrievalArguments
    from imdb_llm.llm.med.rules import EMERGENCY_NOTICE
    from imdb_llm.serve.api_server import ServerState, build_job

    model, tok, _ = tiny
    guard = MedicalGuard(KnowledgeIndex([("chest pain what to do", "call emergency"), ("sore knee", "rest it")]), RetrievalArguments(1, 40))
    engine = GenerationEngine.from_args(model, tok, EngineArgs())
    app = create_app(engine, model_name=MODEL, max_tokens_cap=CAP, guard=guard)
    question = [{"role": "user", "content": "胸口压榨样疼痛 chest pain"}]
    state = ServerState(engine, tok, MODEL, CONTEXT, CAP, guard=guard, defaults=engine_defaults(), created=0)
    job, _ = build_job(openai_body(question), state)
    assert "call emergency" in tok.decode(job.prompt_ids)  # the retrieved record is in the prompt
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        whole = greedy(client, question).choices[0].message.content
        streamed, _ = stream_text(client, question)
        plain = greedy(client, HELLO).choices[0].message.content
    assert whole.startswith(EMERGENCY_NOTICE) and streamed == whole
    assert not plain.startswith(EMERGENCY_NOTICE)


def engine_defaults():
    from imdb_llm.llm.generation import GenerationDefaults

    return GenerationDefaults(max_new_tokens=24)


def openai_body(messages):
    from imdb_llm.serve.protocol import ChatCompletionRequest

    return ChatCompletionRequest(model=MODEL, messages=messages, max_tokens=24, temperature=0)
