"""scripts/chat.py driven through stdin on a tiny converted ChatGLM2, and the history logic."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_models import build_prompt, make_tiny_chatglm2
from imdb_llm.cli import UserError
from imdb_llm.llm.chat import ChatSession
from imdb_llm.llm.loading import load_causal_lm, load_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_glm(tmp_path_factory):
    return make_tiny_chatglm2(tmp_path_factory.mktemp("chat") / "tiny-chatglm2")


def greedy_reply(model, tok, prompt_ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, pad_token_id=0)
    return tok.decode(out[0, len(prompt_ids):], skip_special_tokens=True).strip()


def test_session_renders_history_in_chatglm2_format(tiny_glm):
    tok, model = load_tokenizer(str(tiny_glm)), load_causal_lm(str(tiny_glm))
    session = ChatSession(model, tok, max_new_tokens=4, do_sample=False)
    first = session.reply("你好")
    assert first == greedy_reply(model, tok, tok(build_prompt("你好"))["input_ids"], 4)
    second_prompt = session.encode("1+1=?")
    assert second_prompt == tok(build_prompt("1+1=?", [("你好", first)]))["input_ids"]
    session.clear()
    assert session.encode("1+1=?") == tok(build_prompt("1+1=?"))["input_ids"]


def test_session_drops_oldest_rounds_to_fit_the_context(tiny_glm):
    tok, model = load_tokenizer(str(tiny_glm)), load_causal_lm(str(tiny_glm))
    session = ChatSession(model, tok, max_new_tokens=4, max_context_tokens=60, do_sample=False)
    for i in range(6):
        session.reply(f"第{i}个问题：请简单回答")
        assert len(session.encode("再来一个")) + 4 <= 60
    assert session.dropped_rounds > 0 and session.history[0]["content"] != "第0个问题：请简单回答"
    with pytest.raises(UserError, match="too long"):
        session.encode("长" * 200)


def test_chat_cli_over_stdin(tiny_glm):
    tok, model = load_tokenizer(str(tiny_glm)), load_causal_lm(str(tiny_glm))
    first = greedy_reply(model, tok, tok(build_prompt("你好"))["input_ids"], 5)
    second = greedy_reply(model, tok, tok(build_prompt("hi", [("你好", first)]))["input_ids"], 5)
    after_clear = greedy_reply(model, tok, tok(build_prompt("hi"))["input_ids"], 5)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "chat.py"), "--model", str(tiny_glm), "--max_new_tokens", "5", "--do_sample", "false"],
        input="你好\nhi\nclear\nhi\nexit\nnever read\n", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    replies = [line.split("bot> ", 1)[1].strip() for line in proc.stdout.splitlines() if "bot> " in line]
    assert replies == [first, second, after_clear]
    assert "(history cleared)" in proc.stdout


def test_models_without_tokenizer_or_chat_template_are_refused(tmp_path, tiny_glm):
    from imdb_llm.llm.chatglm2.convert import convert_checkpoint

    plain = convert_checkpoint(REPO / "tests" / "fixtures" / "chatglm2" / "tiny-official", tmp_path / "m", log=lambda *_: None)
    with pytest.raises(UserError, match="cannot load tokenizer"):
        load_tokenizer(str(plain))
    tok = load_tokenizer(str(tiny_glm))
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        ChatSession(load_causal_lm(str(plain)), tok)
