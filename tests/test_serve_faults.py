"""The fault battery of issue 53 against a tiny model served in-process: bad requests refused with
OpenAI-shaped 4xx bodies, a job whose client left stopped at once, dropped streams freeing their slots."""

import time

import pytest

from imdb_llm.serve import faults
from imdb_llm.serve.api_server import create_app, serve_in_thread
from imdb_llm.serve.engine import EngineArgs, GenerationEngine
from tiny_models import make_tiny_chat_model

KEY, MODEL, CONTEXT = "secret-key", "tiny", 256


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    path = make_tiny_chat_model(tmp_path_factory.mktemp("tiny-faults"), context_length=CONTEXT)
    model, tok = load_causal_lm(str(path)).eval(), load_tokenizer(str(path))
    hook = model.register_forward_pre_hook(lambda *a: time.sleep(0.01))  # a model slow enough to leave mid-answer
    engine = GenerationEngine.from_args(model, tok, EngineArgs(prefill_chunk=32))
    app = create_app(engine, model_name=MODEL, api_key=KEY, max_tokens_cap=200)
    with serve_in_thread(app) as url:
        yield url
    hook.remove()


def test_every_bad_request_gets_its_openai_error(served):
    result = faults.bad_requests(served, KEY, MODEL, CONTEXT)
    wrong = [(c["name"], c["status"], c["expected"], c["message"]) for c in result["cases"] if c["status"] != c["expected"] or not c["openai_body"]]
    assert result["bad_requests_tried"] >= 40 and not wrong
    assert result["server_errors_5xx"] == result["accepted_bad_requests"] == result["non_openai_error_bodies"] == 0


def test_a_body_that_is_not_an_openai_error_is_counted():
    assert faults.is_openai_error({"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}})
    assert not faults.is_openai_error({"detail": "Not Found"})
    assert not faults.is_openai_error({"error": {"message": "m", "type": "t", "param": 34, "code": None}})  # a byte offset is no param


def test_a_job_whose_client_left_stops_and_dropped_streams_free_their_slots(served):
    assert faults.orphan_seconds(served, KEY, MODEL, "hello, how are you?", max_tokens=200, client_timeout=0.3) <= 1.0
    streams = faults.abandoned_streams(served, KEY, MODEL, n=4, max_tokens=40)
    assert streams["abandoned_streams"] == streams["abandoned_streams_freed"] == 2 and streams["completed_streams"] == 2
    assert streams["streams_idle_after_s"] is not None
