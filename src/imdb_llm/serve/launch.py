"""Starting a server process for a benchmark and waiting until it answers: one home for the bench
scripts (throughput, the fault battery), which must measure the real CLI, on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imdb_llm.cli import UserError

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model: str, port: int, served_name: str, max_tokens_cap: int, *flags: str) -> list[str]:
    """``scripts/serve.py`` on 127.0.0.1 only, quiet, without the web page, plus ``flags``: the server
    every benchmark measures."""
    return [sys.executable, "scripts/serve.py", "--model_name_or_path", model, "--host", "127.0.0.1", "--port", str(port), "--served_model_name", served_name,
            "--web", "false", "--log_level", "warning", "--max_tokens_cap", str(max_tokens_cap), *flags]


def start(cmd: list[str], log_file) -> subprocess.Popen:
    """``cmd`` from the repository root, its output into ``log_file`` (and not a result's RUN_COMMAND)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RUN_COMMAND", None)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)


def wait_healthy(proc, url: str, timeout: float, log_path: Path, health: str = "/health", headers: dict | None = None) -> None:
    """Until ``url + health`` answers 200; a one-line error when the process exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise UserError(f"the server exited with code {proc.returncode}: {tail[0]}")
        try:
            if httpx.get(url + health, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise UserError(f"the server was not healthy after {timeout:.0f} s (see its log: {log_path})")


def stop(proc, timeout: float = 15.0) -> None:
    """Terminate, then kill if it does not exit in ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running_server(cmd: list[str], url: str, startup_timeout: float, health: str = "/health", headers: dict | None = None):
    """A server started from ``cmd``, healthy, stopped on exit whatever happens: yields ``(proc, log path)``."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log_file:
            proc = start(cmd, log_file)
        try:
            wait_healthy(proc, url, startup_timeout, log_path, health, headers)
            yield proc, log_path
        finally:
            stop(proc)
