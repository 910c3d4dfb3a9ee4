"""Driving a terminal program through a pseudo-terminal (imdb_llm.transcript, scripts/capture_chat.py)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imdb_llm.cli import UserError
from imdb_llm.transcript import clean, run_in_terminal, splice

REPO = Path(__file__).resolve().parents[1]

# A stand-in for scripts/chat.py: same prompt, answers only when stdout is a terminal.
ECHO_CHAT = textwrap.dedent("""
    import sys
    assert sys.stdin.isatty() and sys.stdout.isatty(), "not a terminal"
    print("model ready", flush=True)
    while True:
        print("\\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            print()
            break
        print("bot> \\x1b[1m" + line.strip()[::-1] + "\\x1b[0m", flush=True)
""")


@pytest.fixture
def echo_chat(tmp_path):
    path = tmp_path / "echo_chat.py"
    path.write_text(ECHO_CHAT)
    return [sys.executable, str(path)]


def test_questions_are_typed_at_the_prompt_and_answers_captured(echo_chat):
    t = run_in_terminal(echo_chat, ["hello", "问题"], timeout=60)
    assert t.exit_status == 0
    assert "model ready" in t.text
    assert "you> hello\n" in t.text  # the terminal echoes what was typed
    assert "bot> olleh" in t.text and "bot> 题问" in t.text
    assert "\x1b" not in t.text and "\r" not in t.text


def test_a_program_that_exits_early_is_an_error(tmp_path):
    path = tmp_path / "quits.py"
    path.write_text("print('bye')\n")
    with pytest.raises(UserError, match="exited before asking"):
        run_in_terminal([sys.executable, str(path)], ["hello"], timeout=60)


def test_a_program_that_never_prompts_times_out(tmp_path):
    path = tmp_path / "silent.py"
    path.write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(UserError, match="within the time limit"):
        run_in_terminal([sys.executable, str(path)], ["hello"], timeout=1)


def test_splice_replaces_only_the_marked_section():
    doc = "a\n<!-- s:start -->\nold\n<!-- s:end -->\nb\n"
    assert splice(doc, "s", "new") == "a\n<!-- s:start -->\nnew\n<!-- s:end -->\nb\n"
    with pytest.raises(UserError, match="one '<!-- t:start -->'"):
        splice(doc, "t", "x")


def test_clean_strips_escapes_and_carriage_returns():
    assert clean(b"\x1b[32mok\x1b[0m\r\nline\r") == "ok\nline\n"


def test_capture_chat_writes_the_page_and_leaves_it_on_failure(tmp_path, echo_chat):
    page = tmp_path / "page.md"
    page.write_text("# Page\n<!-- chat-transcript:start -->\n<!-- chat-transcript:end -->\nend\n")
    cmd = " ".join(echo_chat)
    run = subprocess.run([sys.executable, str(REPO / "scripts/capture_chat.py"), "--command", cmd, "--questions", "abc", "xyz",
                          "--document", str(page), "--timeout", "60"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    text = page.read_text()
    assert "you> abc" in text and "bot> cba" in text and "bot> zyx" in text and text.endswith("end\n")
    before = text
    failing = subprocess.run([sys.executable, str(REPO / "scripts/capture_chat.py"), "--command", f"{sys.executable} -c 'import sys; sys.exit(3)'",
                              "--document", str(page), "--timeout", "30"], capture_output=True, text=True, timeout=120)
    assert failing.returncode != 0 and len(failing.stderr.strip().splitlines()) == 1
    assert page.read_text() == before
