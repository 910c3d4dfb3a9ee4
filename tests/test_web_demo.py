"""The web chat page (src/imdb_llm/serve/static/index.html) in headless Debian Chromium via Playwright.

Type, send, watch the answer stream in, send a second turn (the page must resend the history),
clear. Needs /usr/bin/chromium (``bash scripts/ci_install_browser.sh``); skipped without it.

``WEB_DEMO_MODEL=packaged:smollm2 WEB_DEMO_SCREENSHOT=docs/web-demo.png WEB_DEMO_TIMEOUT_S=600 pytest tests/test_web_demo.py``
regenerates the screenshot in docs/ with a real (small) chat model instead of the random one.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from imdb_llm.serve.api_server import create_app, serve_in_thread
from imdb_llm.serve.engine import EngineArgs, GenerationEngine
from tiny_models import make_tiny_chat_model

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = int(float(os.environ.get("WEB_DEMO_TIMEOUT_S", "60")) * 1000)  # raise for a real model on a slow CPU
MAX_TOKENS = os.environ.get("WEB_DEMO_MAX_TOKENS", "48")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian chromium not installed at {CHROMIUM}: run scripts/ci_install_browser.sh")


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    model_path = os.environ.get("WEB_DEMO_MODEL") or str(make_tiny_chat_model(tmp_path_factory.mktemp("web-tiny")))
    model, tok = load_causal_lm(model_path).eval(), load_tokenizer(model_path)
    # Slow each decode step a little so the test can see the answer grow before it ends.
    hook = model.register_forward_pre_hook(lambda *a: time.sleep(0.02))
    app = create_app(GenerationEngine.from_args(model, tok, EngineArgs()), model_name="demo-model", max_tokens_cap=256)
    with serve_in_thread(app) as url:
        yield url
    hook.remove()


def test_type_send_stream_multiturn_clear(chat_server, tmp_path):
    from playwright.sync_api import sync_playwright

    screenshot = Path(os.environ.get("WEB_DEMO_SCREENSHOT") or tmp_path / "web-demo.png")
    bodies, violations = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.on("request", lambda r: r.method == "POST" and bodies.append(json.loads(r.post_data)))
            # The page runs under its own Content-Security-Policy: any violation shows up on the console.
            page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
            page.goto(chat_server + "/")
            # Selectors, not wait_for_function: the CSP (rightly) forbids the eval that the latter uses.
            page.wait_for_selector("#model:text-is('demo-model')", timeout=20_000)
            page.fill("#max_tokens", MAX_TOKENS)
            page.fill("#temperature", "0")

            page.fill("#input", "Hi! Can you recommend a film for tonight?")
            page.click("#send")
            # Streaming: text shows up while the request is still running ...
            page.wait_for_selector("body[data-busy='1'] .msg.assistant .content:not(:empty)", timeout=WAIT_MS)
            partial = page.text_content(".msg.assistant .content")
            # ... and keeps growing until the turn is done.
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=WAIT_MS)
            first = page.text_content(".msg.assistant .content")
            assert first and len(first) >= len(partial) and first.startswith(partial)
            assert page.text_content(".msg.user .content") == "Hi! Can you recommend a film for tonight?"

            page.fill("#input", "Something shorter, please.")
            page.press("#input", "Enter")  # Enter sends too
            page.wait_for_selector(".msg.assistant[data-done='1'] >> nth=1", timeout=WAIT_MS)
            assert page.locator(".msg.user").count() == 2 and page.locator(".msg.assistant").count() == 2
            assert page.locator(".msg.error").count() == 0
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)

            page.click("#clear")
            assert page.locator(".msg").count() == 0
            page.fill("#input", "New conversation.")
            page.click("#send")
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=WAIT_MS)
        finally:
            browser.close()

    # Multi-turn means the page resent the history; Clear means it forgot it.
    assert [[m["role"] for m in b["messages"]] for b in bodies] == [["user"], ["user", "assistant", "user"], ["user"]]
    assert bodies[1]["messages"][1]["content"] == first
    assert all(b["stream"] is True and b["model"] == "demo-model" for b in bodies)
    assert screenshot.stat().st_size > 10_000
    assert violations == []
