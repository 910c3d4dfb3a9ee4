"""A terminal chat, driven by a script, captured as a person would have seen it.

Why a pseudo-terminal and not a pipe: the chat CLI is meant for people, and what a person sees is
what should go into the docs, including the echo of what they typed, streaming that arrives in
pieces, and whatever the program prints when it is stdout to a terminal. ``pty.fork`` gives the
child a real terminal; the parent plays the user: it waits for the prompt, types a question, waits
for the next prompt, and so on.
"""

from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path

from imdb_llm.cli import UserError
from imdb_llm.results import atomic_write_text

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class Transcript:
    text: str
    exit_status: int
    seconds: float


def _read_until(fd: int, marker: bytes, buffer: bytearray, deadline: float) -> bool:
    """Read from ``fd`` into ``buffer`` until ``marker`` appears after what was already there, or EOF."""
    start = len(buffer)
    while marker not in buffer[start:]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UserError(f"no {marker.decode(errors='replace')!r} prompt within the time limit; last output: "
                            f"{clean(bytes(buffer[-200:]))!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        buffer.extend(chunk)
    return True


def run_in_terminal(argv: list[str], inputs: list[str], prompt: str = "you> ", timeout: float = 600.0,
                    env: dict[str, str] | None = None) -> Transcript:
    """Run ``argv`` in a pseudo-terminal, answer each ``prompt`` with the next line of ``inputs``.

    Every input waits for a fresh prompt (at most ``timeout`` seconds each); after the last one the
    terminal is closed for input (Ctrl-D) and the program's exit status is returned with the text."""
    import pty

    began = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the program
        try:
            os.execvpe(argv[0], argv, {**os.environ, **(env or {})})
        finally:
            os._exit(127)
    buffer = bytearray()
    marker = prompt.encode()
    try:
        for line in inputs:
            if not _read_until(fd, marker, buffer, time.monotonic() + timeout):
                raise UserError(f"{argv[0]} exited before asking for input; last output: {clean(bytes(buffer[-300:]))!r}")
            os.write(fd, line.encode() + b"\n")
        if _read_until(fd, marker, buffer, time.monotonic() + timeout):
            os.write(fd, b"\x04")  # end of input: the chat CLI quits
            _read_until(fd, b"\x00never", buffer, time.monotonic() + 30)  # drain to EOF
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return Transcript(clean(bytes(buffer)), os.waitstatus_to_exitcode(status), time.monotonic() - began)


def clean(raw: bytes) -> str:
    """Terminal bytes as plain text: escape sequences and carriage returns gone."""
    text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def splice(document: str, section: str, body: str) -> str:
    """``document`` with the text between ``<!-- section:start -->`` and ``<!-- section:end -->`` replaced."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if document.count(start) != 1 or document.count(end) != 1 or document.index(start) > document.index(end):
        raise UserError(f"expected one '{start}' ... '{end}' pair in the document")
    head, rest = document.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def write_section(path: str | Path, section: str, body: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such document")
    atomic_write_text(path, splice(path.read_text(encoding="utf-8"), section, body))
