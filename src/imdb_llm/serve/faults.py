"""The server under faults (issue 53): bad and hostile requests, clients that leave, and one long
prompt among running streams - what a careful user or an attacker would try, measured.

Each probe talks HTTP to a running server on 127.0.0.1 and returns plain numbers:

* :func:`bad_requests` - malformed JSON, wrong types, out-of-range values, wrong content type, bad
  keys, unknown routes, a prompt past the context, unsupported features. Every answer must be a 4xx
  with an OpenAI-shaped body (``{"error": {"message", "type", "param", "code"}}``); a 5xx or another
  body shape is counted.
* :func:`orphan_seconds` - a non-streaming request whose client gives up: how long the engine keeps
  the job running after the client left (``/health``'s ``running`` back to its level before).
* :func:`stream_gap_during_prefill` - a stream runs, then a prompt of thousands of tokens arrives:
  the longest wait between two tokens of the running stream while the long prompt is prefilled.
* :func:`abandoned_streams` - several streams at once, half of them dropped mid-answer: the rest
  complete and the engine ends idle.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

GOOD = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@dataclass
class BadRequest:
    """One request that must be refused: its name, what is sent, and the status it should get."""

    name: str
    body: Any = None  # a dict (sent as JSON), bytes (sent as is) or None (no body)
    expect: int = 400
    method: str = "POST"
    path: str = "/v1/chat/completions"
    headers: dict | None = None  # merged over the default: JSON and the right key
    auth: bool = True  # False: no Authorization header at all


def _with(**changes) -> dict:
    body = {**GOOD, **changes}
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def bad_request_cases(model: str, context_length: int) -> list[BadRequest]:
    """At least 40 requests a server must refuse cleanly."""
    msg = GOOD["messages"]
    long_text = "word " * (context_length + 100)
    cases = [
        BadRequest("invalid JSON", b'{"model": "x", "messages": ['),
        BadRequest("empty body", b""),
        BadRequest("JSON array body", b"[]"),
        BadRequest("JSON string body", b'"hello"'),
        BadRequest("text/plain body", b"hello", 415, headers={"Content-Type": "text/plain"}),
        BadRequest("form body", b"a=1", 415, headers={"Content-Type": "application/x-www-form-urlencoded"}),
        BadRequest("messages missing", _with(messages=_DROP)),
        BadRequest("messages a string", _with(messages="hi")),
        BadRequest("messages empty", _with(messages=[])),
        BadRequest("message without role", _with(messages=[{"content": "hi"}])),
        BadRequest("unknown role", _with(messages=[{"role": "wizard", "content": "hi"}])),
        BadRequest("content a number", _with(messages=[{"role": "user", "content": 5}])),
        BadRequest("content null", _with(messages=[{"role": "user", "content": None}])),
        BadRequest("lone surrogate", _with(messages=[{"role": "user", "content": "\ud800"}])),
        BadRequest("image part", _with(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])),
        BadRequest("max_tokens negative", _with(max_tokens=-1)),
        BadRequest("max_tokens zero", _with(max_tokens=0)),
        BadRequest("max_tokens a string", _with(max_tokens="10")),
        BadRequest("max_tokens a float", _with(max_tokens=3.5)),
        BadRequest("max_tokens past the cap", _with(max_tokens=10**9)),
        BadRequest("temperature negative", _with(temperature=-1)),
        BadRequest("temperature too high", _with(temperature=5)),
        BadRequest("temperature a string", _with(temperature="0.5")),
        BadRequest("top_p above 1", _with(top_p=1.5)),
        BadRequest("top_p a string", _with(top_p="high")),
        BadRequest("stream a string", _with(stream="yes")),
        BadRequest("stream a number", _with(stream=1)),
        BadRequest("n above 1", _with(n=2)),
        BadRequest("stop a number", _with(stop=5)),
        BadRequest("too many stop strings", _with(stop=[str(i) for i in range(10)])),
        BadRequest("seed a string", _with(seed="abc")),
        BadRequest("frequency_penalty out of range", _with(frequency_penalty=5)),
        BadRequest("presence_penalty a string", _with(presence_penalty="x")),
        BadRequest("tools", _with(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])),
        BadRequest("tool role", _with(messages=msg + [{"role": "tool", "content": "42", "tool_call_id": "c1"}])),
        BadRequest("unknown model", _with(model="no-such-model"), 404),
        BadRequest("prompt past the context", _with(messages=[{"role": "user", "content": long_text}])),
        BadRequest("body past the size limit", b'{"messages": [{"role": "user", "content": "' + b"a" * 2_000_000 + b'"}]}', 413),
        BadRequest("no API key", _with(), 401, auth=False),
        BadRequest("wrong API key", _with(), 401, headers={"Authorization": "Bearer wrong"}),
        BadRequest("GET on completions", None, 405, method="GET"),
        BadRequest("unknown route", _with(), 404, path="/v1/no/such/route"),
        BadRequest("unknown model card", None, 404, method="GET", path="/v1/models/no-such-model"),
    ]
    for case in cases:  # the right model name wherever a body names none
        if isinstance(case.body, dict) and "model" not in case.body:
            case.body = {"model": model, **case.body}
    return cases


def is_openai_error(body: Any) -> bool:
    """``{"error": {"message": str, "type": str, "param": str|None, "code": ...}}``."""
    error = body.get("error") if isinstance(body, dict) else None
    return (isinstance(error, dict) and isinstance(error.get("message"), str) and bool(error["message"])
            and isinstance(error.get("type"), str) and "param" in error and "code" in error
            and (error["param"] is None or isinstance(error["param"], str)))


def bad_requests(url: str, api_key: str, model: str, context_length: int) -> dict:
    """Send every case; count 5xx, non-OpenAI bodies, wrong statuses and requests accepted."""
    import httpx

    rows = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for case in bad_request_cases(model, context_length):
            content = json.dumps(case.body).encode() if isinstance(case.body, dict) else case.body
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if case.auth else {}), **(case.headers or {})}
            r = client.request(case.method, case.path, content=content, headers=headers)
            try:
                body = r.json()
            except ValueError:
                body = None
            rows.append({"name": case.name, "status": r.status_code, "expected": case.expect, "openai_body": is_openai_error(body),
                         "message": (body or {}).get("error", {}).get("message", "")[:160] if isinstance(body, dict) else r.text[:160]})
    return {"bad_requests_tried": len(rows), "server_errors_5xx": sum(r["status"] >= 500 for r in rows),
            "accepted_bad_requests": sum(r["status"] < 400 for r in rows), "non_openai_error_bodies": sum(not r["openai_body"] for r in rows),
            "unexpected_status": sum(r["status"] != r["expected"] for r in rows), "cases": rows}


def running_jobs(url: str, api_key: str) -> int:
    """``/health``'s count of jobs the engine holds (decoding or being prefilled)."""
    import httpx

    return int(httpx.get(url + "/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=10).json()["running"])


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(every)
    return None


def orphan_seconds(url: str, api_key: str, model: str, content: str, max_tokens: int, client_timeout: float, limit: float = 120) -> float:
    """A non-streaming request abandoned by its client after ``client_timeout`` s: seconds from the
    client leaving until the engine runs nothing (``limit`` when it never stops)."""
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0}
    try:
        httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=client_timeout)
    except httpx.TimeoutException:
        pass  # the point: the client gave up
    waited = wait_until(lambda: running_jobs(url, api_key) == 0, limit)
    return round(waited if waited is not None else limit, 2)


def _stream(url: str, api_key: str, body: dict, on_token: Callable[[float], None], stop: threading.Event | None = None) -> bool:
    """Stream one request, calling ``on_token(time)`` per content chunk; True when it ended with [DONE].
    Returns False at once (closing the connection) when ``stop`` is set."""
    import httpx

    with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers={"Authorization": f"Bearer {api_key}"},
                      timeout=300) as r:
        for line in r.iter_lines():
            if stop is not None and stop.is_set():
                return False
            if line.strip() == "data: [DONE]":
                return True
            if line.startswith("data: "):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                    on_token(time.monotonic())
    return False


def stream_gap_during_prefill(url: str, api_key: str, model: str, long_content: str, runner_tokens: int = 400) -> dict:
    """The longest gap between two tokens of a running stream while a long prompt is prefilled,
    beside the stream's median gap before it arrived."""
    times: list[float] = []
    runner = {"model": model, "messages": [{"role": "user", "content": "Count from 1 to 500, one number per line."}], "max_tokens": runner_tokens,
              "temperature": 0}
    thread = threading.Thread(target=_stream, args=(url, api_key, runner, times.append), daemon=True)
    thread.start()
    wait_until(lambda: len(times) >= 20, 120)
    first_long: list[float] = []
    sent = time.monotonic()
    long_body = {"model": model, "messages": [{"role": "user", "content": long_content}], "max_tokens": 4, "temperature": 0}
    _stream(url, api_key, long_body, first_long.append)
    prefilled = first_long[0] if first_long else time.monotonic()
    thread.join(300)
    before = [b - a for a, b in zip(times, times[1:]) if b < sent]
    during = [b - a for a, b in zip(times, times[1:]) if b > sent and a < prefilled]
    before.sort()
    return {"long_prompt_prefill_seconds": round(prefilled - sent, 2), "max_stream_gap_during_long_prefill_s": round(max(during, default=0.0), 3),
            "median_stream_gap_s": round(before[len(before) // 2], 3) if before else None, "runner_tokens": len(times),
            "runner_tokens_during_long_prefill": sum(sent < t < prefilled for t in times),
            "runner_outlived_prefill": bool(times) and times[-1] > prefilled}


def abandoned_streams(url: str, api_key: str, model: str, n: int = 8, max_tokens: int = 64) -> dict:
    """``n`` streams at once; every other one is dropped after its 3rd token. The others must
    complete, and the engine must end with nothing running."""
    results: list[bool | None] = [None] * n
    stops = [threading.Event() for _ in range(n)]

    def client(i: int):
        counter = []

        def on_token(t):
            counter.append(t)
            if i % 2 and len(counter) >= 3:
                stops[i].set()
        body = {"model": model, "messages": [{"role": "user", "content": f"Count from 1 to {100 + i}."}], "max_tokens": max_tokens, "temperature": 0}
        results[i] = _stream(url, api_key, body, on_token, stops[i])

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    idle = wait_until(lambda: running_jobs(url, api_key) == 0, 30)
    abandoned, left = sum(s.is_set() for s in stops), running_jobs(url, api_key)  # the completed ones are done: what runs is orphaned
    return {"abandoned_streams": abandoned, "abandoned_streams_freed": max(abandoned - left, 0), "completed_streams": sum(bool(r) for r in results),
            "streams_idle_after_s": round(idle, 2) if idle is not None else None}
