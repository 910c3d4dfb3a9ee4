"""Continuous batching in the server engine: batched answers equal solo ones, rows come and go.

Tiny random models (a Llama with ChatML, a ChatGLM2-shaped ``GlmForCausalLM``, and the Llama with
a LoRA adapter) on CPU. Every check compares the engine with itself: a request served in a batch
must produce exactly the token ids it produces when served alone, so nothing is hard-coded.
"""

import threading
import time

import httpx
import openai
import pytest
import torch

from imdb_llm.llm.generation import GenerationDefaults
from imdb_llm.serve.api_server import create_app, serve_in_thread
from imdb_llm.serve.engine import EngineArgs, GenerationEngine, Job
from tiny_models import make_tiny_chat_model

# Different lengths on purpose: in one batch the shorter prompts are left padded.
PROMPTS = ["hi", "hello, how are you?", "This movie was great, I loved the acting and the story. The quick brown fox.", "a fine film"]


SYSTEM = "You are a film critic. Answer in one short sentence, and say whether the review is positive or negative."


def _prompt_ids(tok, text, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(prompt, add_special_tokens=False)["input_ids"]


class Recorder:
    """Collects one job's events with timestamps; ``done`` is set at its last event."""

    def __init__(self, broken=False):
        self.events, self.done, self.deltas, self.broken = [], threading.Event(), 0, broken

    def __call__(self, event):
        self.events.append((time.monotonic(), event))
        if event[0] == "delta":
            self.deltas += 1
            if self.broken:  # a client callback that blows up on its first text
                raise RuntimeError("client side broke")
        else:
            self.done.set()

    @property
    def final(self):
        return self.events[-1][1]

    def first_delta_at(self):
        return next(t for t, e in self.events if e[0] == "delta")


def make_job(tok, text, max_new=12, system=None, seed=None, **sampling):
    """A greedy job, or a sampled one when ``sampling`` gives a temperature (and top_p)."""
    settings = GenerationDefaults(max_new_tokens=max_new, do_sample=bool(sampling), **sampling)
    job = Job(prompt_ids=_prompt_ids(tok, text, system), settings=settings, seed=seed)
    job.emit = Recorder()
    return job


def run_together(engine, jobs, timeout=60):
    for job in jobs:
        engine.submit(job)
    for job in jobs:
        assert job.emit.done.wait(timeout), "a job never finished"
    return jobs


def run_alone(engine, tok, specs):
    """Each (text, max_new, kwargs) served on its own: the reference answers."""
    out = []
    for text, max_new, kw in specs:
        [job] = run_together(engine, [make_job(tok, text, max_new, **kw)])
        out.append((list(job.token_ids), job.emit.final))
    return out


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    path = make_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"), context_length=256)
    return load_causal_lm(str(path)).eval(), load_tokenizer(str(path)), path


@pytest.fixture(scope="module")
def tiny_llama_int4(tiny_llama):
    """The tiny Llama with 4-bit decoding weights (serve.py --quantize int4), a copy of its own."""
    import copy

    from imdb_llm.llm.quantize import quantize_for_decode

    model, tok, path = tiny_llama
    quantized = copy.deepcopy(model)
    quantize_for_decode(quantized)
    return quantized.eval(), tok, path


@pytest.fixture(scope="module")
def tiny_glm(tmp_path_factory):
    from tiny_models import make_tiny_glm

    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

    path = make_tiny_glm(tmp_path_factory.mktemp("tiny-glm"), PROMPTS * 10)
    model = load_causal_lm(path).eval()
    with torch.no_grad():  # larger random logits: clear argmax winners, a varied greedy answer
        model.lm_head.weight.normal_(0.0, 1.0)
    return model, load_tokenizer(path), path


@pytest.fixture(scope="module")
def tiny_lora(tiny_llama, tmp_path_factory):
    """The tiny Llama plus a saved LoRA adapter, loaded back the way ``serve.py --adapter`` does."""
    from peft import LoraConfig, get_peft_model

    from imdb_llm.llm.loading import load_causal_lm

    _, tok, path = tiny_llama
    base = load_causal_lm(str(path))
    torch.manual_seed(1)  # init_lora_weights=False: random A and B, so the adapter changes answers
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(adapter)
    return load_causal_lm(str(path), adapter=str(adapter)).eval(), tok, path


@pytest.fixture
def slow(request):
    """Make each forward of a model take >= ``seconds``, so tests can act mid-generation."""
    hooks = []

    def apply(model, seconds=0.02):
        hooks.append(model.register_forward_pre_hook(lambda *a: time.sleep(seconds)))

    yield apply
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_glm"])
def test_padded_batch_logits_match_full_forward(which, request):
    """The cache surgery itself, checked on logits (far more sensitive than argmax): rows of
    different lengths, a row joining mid-way and a row leaving all give the logits a plain
    forward of that row's whole sequence gives."""
    from imdb_llm.serve.batch import PaddedBatch

    model, tok, _ = request.getfixturevalue(which)
    seqs = [_prompt_ids(tok, t) for t in PROMPTS[:3]]  # three lengths

    def reference(seq):
        with torch.no_grad():
            return model(input_ids=torch.tensor([seq])).logits[0, -1].float()

    def check(batch_logits):
        for row, seq in zip(batch_logits, seqs):
            torch.testing.assert_close(row, reference(seq), atol=1e-4, rtol=1e-4)

    with torch.no_grad():
        batch, logits = PaddedBatch.prefill(model, seqs, pad_id=tok.pad_token_id, device="cpu")
        check(logits)
        for step in range(3):
            tokens = torch.tensor([7 + step + r for r in range(len(seqs))])
            seqs = [s + [int(t)] for s, t in zip(seqs, tokens)]
            logits = batch.step(tokens)
            check(logits)
            if step == 0:  # a longer prompt joins: everyone else is re-padded on the left
                newcomer = _prompt_ids(tok, PROMPTS[2] + " " + PROMPTS[1])
                fresh, fresh_logits = PaddedBatch.prefill(model, [newcomer], pad_id=tok.pad_token_id, device="cpu")
                batch.extend(fresh)
                seqs.append(newcomer)
                logits = torch.cat([logits, fresh_logits])
                check(logits)
            if step == 1:  # the longest and the first row leave: leading columns get trimmed
                width = batch.width
                batch.keep([1, 2])
                seqs = [seqs[1], seqs[2]]
                assert batch.width < width and batch.mask[:, 0].any()


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_glm"])
def test_shared_prefix_logits_match_full_forward(which, request):
    """Prompts that share a system prompt reuse its cached keys/values (rows laid out as
    [prefix][padding][rest]); logits after prefill and after a step equal a plain forward."""
    from imdb_llm.serve.batch import PaddedBatch
    from imdb_llm.serve.batch import common_prefix_length

    model, tok, _ = request.getfixturevalue(which)
    seqs = [_prompt_ids(tok, t, SYSTEM) for t in PROMPTS[:3]]
    k = common_prefix_length(seqs[0], seqs[1])
    assert k >= 16, "the shared system prompt should give a long common prefix"
    with torch.no_grad():
        first, _ = PaddedBatch.prefill(model, seqs[:1], pad_id=tok.pad_token_id, device="cpu")
        prefix = first.prefix_of(0, k)
        batch, logits = PaddedBatch.prefill(model, seqs, pad_id=tok.pad_token_id, device="cpu", prefix=prefix)
        tokens = torch.tensor([11, 12, 13])
        seqs = [s + [int(t)] for s, t in zip(seqs, tokens)]
        step_logits = batch.step(tokens)
        for row, seq in enumerate(seqs):
            full = model(input_ids=torch.tensor([seq])).logits[0].float()
            torch.testing.assert_close(logits[row], full[-2], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(step_logits[row], full[-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_glm"])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_chunked_prefill_gives_the_logits_of_one_forward(which, with_prefix, request):
    """Prompts of different lengths prefilled 5 columns at a time (after a shared cached prefix or
    not): the next-token logits and the logits after a decode step are a plain forward's."""
    from imdb_llm.serve.batch import ChunkedPrefill, PaddedBatch, common_prefix_length

    model, tok, _ = request.getfixturevalue(which)
    seqs = [_prompt_ids(tok, t, SYSTEM) for t in PROMPTS[:3]]
    with torch.no_grad():
        prefix = None
        if with_prefix:
            first, _ = PaddedBatch.prefill(model, seqs[:1], pad_id=tok.pad_token_id, device="cpu")
            prefix = first.prefix_of(0, common_prefix_length(seqs[0], seqs[1]))
        run = ChunkedPrefill(model, seqs, pad_id=tok.pad_token_id, device="cpu", prefix=prefix, chunk=5)
        chunks, logits = 0, None
        while logits is None:
            logits, chunks = run.advance(), chunks + 1
        assert chunks == -(-run.width // 5) and chunks > 2
        tokens = torch.tensor([11, 12, 13])
        step_logits = run.batch.step(tokens)
        for row, seq in enumerate(seqs):
            full = model(input_ids=torch.tensor([seq + [int(tokens[row])]])).logits[0].float()
            torch.testing.assert_close(logits[row], full[-2], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(step_logits[row], full[-1], atol=1e-4, rtol=1e-4)


def test_a_long_prompt_prefilled_in_chunks_does_not_freeze_a_running_stream(tiny_llama, slow):
    """While a long prompt is prefilled 8 tokens at a time, the running stream gets a token after
    every chunk; both answers are still their solo answers. A newcomer whose client leaves during
    its prefill is dropped at the next chunk and never decodes."""
    model, tok, _ = tiny_llama
    engine = GenerationEngine(model, tok, context_length=256, prefill_chunk=8)
    engine.eos_ids = []
    long_text = " ".join(PROMPTS) * 2
    try:
        specs = [(PROMPTS[0], 120, {}), (long_text, 5, {})]
        alone = run_alone(engine, tok, specs)
        slow(model)
        runner, newcomer = make_job(tok, *specs[0][:2]), make_job(tok, *specs[1][:2])
        engine.submit(runner)
        while runner.emit.deltas < 2:
            time.sleep(0.01)
        chunks, before = engine.stats["prefill_chunks"], runner.emit.deltas
        run_together(engine, [newcomer])
        chunks = engine.stats["prefill_chunks"] - chunks
        assert chunks >= 5 and runner.emit.deltas - before >= chunks - 1  # a decode step between chunks
        assert runner.emit.done.wait(60)
        assert [(j.token_ids, j.emit.final) for j in (runner, newcomer)] == alone
        orphan, seen = make_job(tok, long_text, 5), engine.stats["prefill_chunks"]
        engine.submit(orphan)
        while engine.stats["prefill_chunks"] == seen:  # its prefill has begun
            time.sleep(0.001)
        orphan.cancel()
        assert orphan.emit.done.wait(10)
    finally:
        engine.close()
    assert orphan.emit.final == ("done", "cancelled", 0) and orphan.token_ids == [] and engine.running == 0


def test_engine_reuses_the_shared_prefix(tiny_llama):
    """The engine learns the system prompt from two requests, then skips recomputing it: the
    answers stay exactly the solo answers computed without any prefix reuse."""
    model, tok, _ = tiny_llama
    specs = [(text, 10, {"system": SYSTEM}) for text in PROMPTS]
    plain = GenerationEngine(model, tok, context_length=256, prefix_cache=False)
    try:
        reference = run_alone(plain, tok, specs)
    finally:
        plain.close()
    engine = GenerationEngine(model, tok, context_length=256, batch_window_ms=300)
    try:
        alone = run_alone(engine, tok, specs)  # the 2nd request teaches the prefix, later ones reuse it
        hits_alone = engine.stats["prefix_hits"]
        jobs = run_together(engine, [make_job(tok, t, n, **kw) for t, n, kw in specs])
    finally:
        engine.close()
    assert hits_alone == len(specs) - 2 and engine.stats["prefix_hits"] == hits_alone + len(specs)
    assert plain.stats["prefix_hits"] == 0
    assert alone == reference and [(j.token_ids, j.emit.final) for j in jobs] == reference


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_glm", "tiny_lora", "tiny_llama_int4"])
def test_batched_greedy_equals_alone(which, request):
    """Prompts of different lengths in one left-padded batch give the same tokens as alone (the
    single-stream fast path: one row, no attention mask), also for a seeded sampled request (it
    draws from its own generator, whoever shares the batch), and with 4-bit decoding weights."""
    model, tok, _ = request.getfixturevalue(which)
    specs = [(text, 12, {}) for text in PROMPTS] + [(PROMPTS[1], 12, {"temperature": 0.9, "top_p": 0.8, "seed": 7})]
    # A window long enough that all jobs submitted back to back start in one prefill.
    engine = GenerationEngine(model, tok, context_length=256, batch_window_ms=300)
    try:
        alone = run_alone(engine, tok, specs)
        engine.stats["peak_running"] = 0
        jobs = run_together(engine, [make_job(tok, text, n, **kw) for text, n, kw in specs])
    finally:
        engine.close()
    assert engine.stats["peak_running"] == len(specs)  # they really shared one batch
    assert [(j.token_ids, j.emit.final) for j in jobs] == alone
    assert all(len(ids) >= 1 for ids, _ in alone)


def test_requests_join_a_running_batch(tiny_llama, slow):
    """Requests arriving mid-generation join the running batch at the next step, and still get
    exactly their solo answers (the cache is re-padded when they join)."""
    model, tok, _ = tiny_llama
    engine = GenerationEngine(model, tok, context_length=256)
    engine.eos_ids = []  # no early end of answer: every job runs to its max_tokens
    try:
        specs = [(PROMPTS[2], 40, {}), (PROMPTS[0], 10, {}), (PROMPTS[1], 10, {})]
        alone = run_alone(engine, tok, specs)
        slow(model)
        first = make_job(tok, *specs[0][:2])
        engine.submit(first)
        while first.emit.deltas < 3 and not first.emit.done.is_set():
            time.sleep(0.01)
        later = run_together(engine, [make_job(tok, t, n) for t, n, _ in specs[1:]])
        assert first.emit.done.wait(60)
    finally:
        engine.close()
    assert max(j.emit.events[-1][0] for j in later) < first.emit.events[-1][0]  # they joined, finished and left first
    assert engine.stats["peak_running"] == 3
    assert [(j.token_ids, j.emit.final) for j in [first, *later]] == alone


def test_mixed_max_tokens_in_one_batch(tiny_llama):
    model, tok, _ = tiny_llama
    engine = GenerationEngine(model, tok, context_length=256, batch_window_ms=300)
    engine.eos_ids = []
    try:
        jobs = run_together(engine, [make_job(tok, PROMPTS[1], n) for n in (3, 9, 17)] + [make_job(tok, PROMPTS[3], 5)])
    finally:
        engine.close()
    assert engine.stats["peak_running"] == 4
    assert [j.emit.final for j in jobs] == [("done", "length", n) for n in (3, 9, 17, 5)]
    assert [len(j.token_ids) for j in jobs] == [3, 9, 17, 5]
    # Same prompt, greedy: the shorter answers are prefixes of the longest one.
    assert jobs[0].token_ids == jobs[2].token_ids[:3] and jobs[1].token_ids == jobs[2].token_ids[:9]


def test_cancel_mid_stream_frees_the_slot(tiny_llama, slow):
    """With room for 3 rows, a 4th request waits; cancelling one running request lets it in while
    the other two are still generating, and they all finish with their solo answers."""
    model, tok, _ = tiny_llama
    engine = GenerationEngine(model, tok, context_length=256, max_running=3)
    engine.eos_ids = []
    try:
        specs = [(PROMPTS[0], 60, {}), (PROMPTS[1], 60, {}), (PROMPTS[2], 60, {}), (PROMPTS[3], 5, {})]
        alone = run_alone(engine, tok, specs)
        slow(model)
        a, b, c, d = jobs = [make_job(tok, t, n) for t, n, _ in specs]
        for job in jobs:
            engine.submit(job)
        while b.emit.deltas < 3:
            time.sleep(0.01)
        assert engine.running == 3 and engine.queued == 1 and not d.emit.events
        b.cancel()
        for job in jobs:
            assert job.emit.done.wait(60)
    finally:
        engine.close()
    assert b.emit.final[:2] == ("done", "cancelled") and len(b.token_ids) < 60
    assert d.emit.first_delta_at() < a.emit.events[-1][0] and d.emit.first_delta_at() < c.emit.events[-1][0]
    assert [(j.token_ids, j.emit.final) for j in (a, c, d)] == [alone[0], alone[2], alone[3]]
    assert engine.running == 0


def test_one_failing_request_does_not_stall_the_others(tiny_llama):
    model, tok, _ = tiny_llama
    engine = GenerationEngine(model, tok, context_length=256, batch_window_ms=300)
    try:
        specs = [(PROMPTS[1], 12, {}), (PROMPTS[3], 12, {})]
        alone = run_alone(engine, tok, specs)
        good = [make_job(tok, t, n) for t, n, _ in specs]
        bad = make_job(tok, PROMPTS[2], 12)
        recorder = bad.emit = Recorder(broken=True)
        run_together(engine, [good[0], bad, good[1]])
    finally:
        engine.close()
    assert recorder.final[0] == "error" and "client side broke" in recorder.final[1]
    assert [(j.token_ids, j.emit.final) for j in good] == alone
    assert [h[1] for h in engine.history if h[0] == bad.id] == ["error"]


def test_overload_gets_503_with_retry_after(tiny_llama):
    """One row, one queue place: the third concurrent request is refused with 503 + Retry-After
    (a clear OpenAI-style error the openai client raises), and the queued one is served later."""
    model, tok, _ = tiny_llama
    app = create_app(GenerationEngine.from_args(model, tok, EngineArgs(max_running=1, max_queue=1)), model_name="tiny")
    engine = app.state.engine
    entered, gate = threading.Event(), threading.Event()  # the model blocks until the test opens it: no timing races

    def block(*args):
        entered.set()
        gate.wait(30)

    hook = model.register_forward_pre_hook(block)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
    statuses = []
    try:
        with serve_in_thread(app) as url:
            endpoint = url + "/v1/chat/completions"
            first = threading.Thread(target=lambda: statuses.append(httpx.post(endpoint, json=body, timeout=60).status_code))
            first.start()
            assert entered.wait(20)  # the first request is off the queue, blocked in its prefill
            second = threading.Thread(target=lambda: statuses.append(httpx.post(endpoint, json=body, timeout=60).status_code))
            second.start()
            deadline = time.time() + 20
            while engine.queued < 1 and time.time() < deadline:
                time.sleep(0.01)
            assert engine.queued == 1
            r = httpx.post(endpoint, json=body, timeout=10)
            assert r.status_code == 503 and r.json()["error"]["code"] == "server_overloaded"
            assert "overloaded" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            with pytest.raises(openai.APIStatusError) as err:
                client.chat.completions.create(**body)
            assert err.value.status_code == 503 and err.value.response.headers["retry-after"]
            gate.set()
            first.join(60)
            second.join(60)
    finally:
        gate.set()
        hook.remove()
    assert statuses == [200, 200]  # both admitted requests were served


def test_bench_serve_smoke(repo_root, tiny_llama, tmp_path):
    """scripts/bench_serve.py end to end on the tiny model: starts serve.py, runs two levels with
    the openai client, stops the server and writes a result file with every level's numbers."""
    import json
    import subprocess
    import sys

    _, _, path = tiny_llama
    cmd = [sys.executable, "scripts/bench_serve.py", "--model", str(path), "--device", "cpu", "--clients", "1", "3",
           "--rounds", "1", "--min_requests", "2", "--max_tokens", "4", "--results_name", "serve-smoke", "--results_dir", str(tmp_path)]
    out = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "serve-smoke.json").read_text())
    levels = {lv["clients"]: lv for lv in result["levels"]}
    assert set(levels) == {1, 3} and [levels[1]["requests"], levels[3]["requests"]] == [2, 3]
    assert result["metrics"]["failed_requests"] == 0 and result["metrics"]["incomplete_streams"] == 0
    assert all(lv["completion_tokens"] >= lv["requests"] and lv["tokens_per_second"] > 0 for lv in levels.values())
    assert "--host 127.0.0.1" in result["server_command"]
    assert "clients" in (tmp_path / "serve-smoke.log").read_text()


@pytest.mark.parametrize("flag", [["--max_running", "0"], ["--max_batch_tokens", "0"], ["--batch_window_ms", "-1"]])
def test_serve_cli_rejects_bad_batching_flags(repo_root, tmp_path, flag):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "scripts/serve.py", "--model", str(tmp_path), *flag],
                         cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and flag[0] in err
