"""One home for a model's generation defaults (issue 31): the evaluation, the chat CLI, the server
and the web page resolve the same :class:`GenerationDefaults`, explicit flags override them, and
every decoding path (``generate`` in eval/chat, the server's batch loop and its static path) applies
the repetition controls the same way."""

import importlib
import json
import threading
from pathlib import Path

import httpx
import pytest
import torch

from imdb_llm.cli import UserError, parse_args
from imdb_llm.llm.generation import (DEFAULTS_FILE, GenerationDefaults, GenerationOverrides, apply_repetition_controls, banned_next_tokens,
                                   resolve_generation_defaults)

REPO = Path(__file__).resolve().parents[1]


def _script(name):
    return importlib.import_module(name)  # scripts/ is on pytest's pythonpath


# -- the dataclass ---------------------------------------------------------------------------------
def test_defaults_check_values_and_parse_candidate_specs():
    base = GenerationDefaults(max_new_tokens=64)
    spec = GenerationDefaults.from_spec("repetition_penalty=1.2, no_repeat_ngram_size=8", base)
    assert (spec.max_new_tokens, spec.repetition_penalty, spec.no_repeat_ngram_size, spec.do_sample) == (64, 1.2, 8, False)
    assert GenerationDefaults.from_spec("do_sample=true,temperature=0.7", base).do_sample is True
    assert spec == GenerationDefaults.from_spec(spec.spec())  # a spec round-trips
    for bad in ("repetition=1.2", "no_repeat_ngram_size=1.5", "do_sample=maybe", "top_p"):
        with pytest.raises(UserError):
            GenerationDefaults.from_spec(bad, base)
    for kwargs in ({"top_p": 0.0}, {"max_new_tokens": 0}, {"repetition_penalty": 0.0}, {"no_repeat_ngram_size": -1}):
        with pytest.raises(UserError):
            GenerationDefaults(**kwargs)
    assert base.override(max_new_tokens=None, top_p=None) is base  # nothing given: the very same object
    greedy = GenerationDefaults(do_sample=True, temperature=0.8).override(temperature=0)  # OpenAI's "0 = greedy"
    assert greedy.do_sample is False and greedy.sampling_temperature == 0.0


def test_resolution_order(tmp_path):
    model, adapter = tmp_path / "model", tmp_path / "adapter"
    model.mkdir()
    adapter.mkdir()
    assert resolve_generation_defaults(str(model)) == GenerationDefaults()  # nothing anywhere: built-in
    assert resolve_generation_defaults("some-org/not-a-folder") == GenerationDefaults()
    (model / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.8, "top_p": 0.8, "eos_token_id": 2}))
    own = resolve_generation_defaults(str(model))
    assert (own.do_sample, own.temperature, own.top_p, own.max_new_tokens) == (True, 0.8, 0.8, 512)
    GenerationDefaults(max_new_tokens=100, repetition_penalty=1.1).save(model)
    assert resolve_generation_defaults(str(model)).repetition_penalty == 1.1  # ours beat the model's own file
    GenerationDefaults(max_new_tokens=50, no_repeat_ngram_size=6).save(adapter)
    tuned = resolve_generation_defaults(str(model), str(adapter))
    assert (tuned.max_new_tokens, tuned.no_repeat_ngram_size, tuned.source) == (50, 6, str(adapter / DEFAULTS_FILE))
    (adapter / DEFAULTS_FILE).write_text(json.dumps({"max_new_tokens": 50, "beam_width": 3}))
    with pytest.raises(UserError, match="beam_width"):
        resolve_generation_defaults(str(model), str(adapter))


def test_eval_chat_and_serve_read_the_same_object_and_flags_override(tmp_path):
    model = tmp_path / "model"
    GenerationDefaults(max_new_tokens=96, repetition_penalty=1.15, no_repeat_ngram_size=12).save(model)
    scripts = {"eval_chat": ("--model_name_or_path",), "chat": ("--model",), "serve": ("--model",)}
    resolved = {}
    for name, (flag,) in scripts.items():
        module = _script(name)
        args, overrides, *_ = parse_args(_argument_types(name, module), [flag, str(model)])
        resolved[name] = overrides.resolve(args.model_name_or_path, args.adapter)  # --model is the old name, kept as an alias
    assert resolved["eval_chat"] is resolved["chat"] is resolved["serve"]  # literally one object
    assert resolved["chat"].repetition_penalty == 1.15 and resolved["chat"].source == str(model / DEFAULTS_FILE)
    for name, (flag,) in scripts.items():
        module = _script(name)
        args, overrides, *_ = parse_args(_argument_types(name, module), [flag, str(model), "--repetition_penalty", "1.3", "--do_sample", "true"])
        mine = overrides.resolve(args.model_name_or_path, args.adapter)
        assert (mine.repetition_penalty, mine.do_sample) == (1.3, True)
        assert (mine.max_new_tokens, mine.no_repeat_ngram_size) == (96, 12)  # the rest stays the model's


ARGUMENTS = {"eval_chat": "EvalArguments", "chat": "ChatArguments", "serve": "ServeArguments"}


def _argument_types(name, module):
    return [getattr(module, ARGUMENTS[name]), GenerationOverrides]


# -- the repetition controls -------------------------------------------------------------------
def test_repetition_controls_by_hand():
    assert banned_next_tokens([5, 6, 7, 5, 6], 3) == {7}  # "5 6" was followed by 7: 5 6 7 may not come again
    assert banned_next_tokens([5, 6, 5], 2) == {6}
    assert banned_next_tokens([1, 2, 3], 1) == {1, 2, 3} and banned_next_tokens([1, 2], 3) == set()
    scores = torch.tensor([[2.0, -2.0, 1.0, 0.5], [2.0, -2.0, 1.0, 0.5]])
    apply_repetition_controls(scores, [[0, 1, 0], []], penalty=2.0)
    assert scores.tolist() == [[1.0, -4.0, 1.0, 0.5], [2.0, -2.0, 1.0, 0.5]]  # positive / 2, negative x 2, row 2 untouched
    apply_repetition_controls(scores, [[2, 3, 2], []], ngram=2)
    assert scores[0, 3] == float("-inf") and torch.isfinite(scores[1]).all()


# -- the server: defaults fill the request, and it decodes like generate() ---------------------
def test_a_request_becomes_settings_over_the_model_defaults():
    from imdb_llm.serve.protocol import ChatCompletionRequest

    def request(**knobs):
        return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **knobs)

    greedy = GenerationDefaults(max_new_tokens=64, repetition_penalty=1.2, no_repeat_ngram_size=4)
    same = request().to_settings(greedy, 32)
    assert same.to_dict() == {**greedy.to_dict(), "max_new_tokens": 32}  # what the request leaves out is the model's
    sampled = request(temperature=0.7, top_p=0.9).to_settings(greedy, 32)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.repetition_penalty) == (True, 0.7, 0.9, 1.2)
    chatglm = GenerationDefaults(do_sample=True, temperature=0.8, top_p=0.8)
    assert request(temperature=0.0).to_settings(chatglm, 16).do_sample is False  # OpenAI's temperature 0 = greedy
    assert request(no_repeat_ngram_size=0).to_settings(greedy, 8).no_repeat_ngram_size == 0



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer
    from tiny_models import make_tiny_chat_model

    path = make_tiny_chat_model(tmp_path_factory.mktemp("tiny-defaults"), context_length=256)
    return load_causal_lm(str(path)).eval(), load_tokenizer(str(path)), path


CONTROLLED = GenerationDefaults(max_new_tokens=20, repetition_penalty=1.5, no_repeat_ngram_size=2)
HELLO = [{"role": "user", "content": "hello, how are you?"}]


def _run(engine, prompt_ids, settings):
    from imdb_llm.serve.engine import Job

    done = threading.Event()
    job = Job(prompt_ids=prompt_ids, settings=settings, emit=lambda e: e[0] != "delta" and done.set())
    engine.submit(job)
    assert done.wait(60)
    return job.token_ids


def test_every_decoding_path_applies_the_controls_alike(tiny):
    """generate() (eval and chat), the server's batch loop and its static-cache path give the same tokens."""
    from imdb_llm.llm.chat import ChatSession
    from imdb_llm.serve.engine import GenerationEngine

    model, tok, _ = tiny
    session = ChatSession(model, tok, settings=CONTROLLED)
    ids = session.encode(HELLO[0]["content"])
    prompt = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), pad_token_id=tok.pad_token_id,
                             **CONTROLLED.generate_kwargs(len(ids)))
    expected = out[0, len(ids):].tolist()
    with torch.no_grad():
        plain = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), pad_token_id=tok.pad_token_id,
                               **GenerationDefaults(max_new_tokens=20).generate_kwargs(len(ids)))[0, len(ids):].tolist()
    assert expected != plain  # the controls matter for this model and prompt
    bigrams = list(zip(expected, expected[1:]))
    assert len(bigrams) == len(set(bigrams))
    assert session.reply(HELLO[0]["content"]) == tok.decode(expected, skip_special_tokens=True).strip()
    for decode in ("dynamic", "static"):
        engine = GenerationEngine(model, tok, context_length=256, decode=decode)
        try:
            got = _run(engine, ids, CONTROLLED)
        finally:
            engine.close()
        assert [t for t in got if t not in engine.eos_ids] == [t for t in expected if t not in engine.eos_ids], decode


def test_server_fills_requests_from_the_defaults_and_shows_them(tiny):
    from imdb_llm.llm.chat import ChatSession
    from imdb_llm.serve.api_server import create_app, serve_in_thread
    from imdb_llm.serve.engine import EngineArgs, GenerationEngine

    model, tok, _ = tiny
    app = create_app(GenerationEngine.from_args(model, tok, EngineArgs()), model_name="tiny", generation_defaults=CONTROLLED)
    expected = ChatSession(model, tok, settings=CONTROLLED).reply(HELLO[0]["content"])
    plain = ChatSession(model, tok, settings=GenerationDefaults(max_new_tokens=20)).reply(HELLO[0]["content"])
    with serve_in_thread(app) as url:
        card = httpx.get(url + "/v1/models", timeout=30).json()["data"][0]
        assert card["generation_defaults"] == CONTROLLED.to_dict()  # what the web page starts from

        def ask(**fields):
            body = {"model": "tiny", "messages": HELLO, **fields}
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()

        said_nothing = ask()
        assert said_nothing["choices"][0]["message"]["content"].strip() == expected
        assert said_nothing["usage"]["completion_tokens"] <= CONTROLLED.max_new_tokens
        overridden = ask(repetition_penalty=1.0, no_repeat_ngram_size=0, temperature=0)
        assert overridden["choices"][0]["message"]["content"].strip() == plain
        assert httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": HELLO, "repetition_penalty": 0},
                          timeout=30).status_code == 400


def test_web_page_starts_from_the_model_defaults():
    page = (REPO / "src" / "imdb_llm" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
    assert "card.generation_defaults" in page and 'changed("temperature"' in page and 'changed("max_tokens"' in page
    assert 'value="0.7"' not in page  # no decoding default of its own
