"""Provenance for every number the project claims: ``results/<name>.json`` plus its run log.

A result file holds ``name``, ``metrics``, ``headline``, ``command`` (exact), ``config``,
``git_sha``, ``device``, ``train_seconds`` and ``date``. The README table and the report are
generated from these files only, so a figure without a file cannot appear anywhere. ``headline``
is the kind of figure the run exists to produce (one of :data:`HEADLINES`): the script that wrote
the file says it, and the report prints that figure in the results table, never guessing it from
the metric keys.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

@dataclass
class ResultArguments:
    """Where a run's headline numbers go. Shared by every script that reports a result."""

    results_name: str | None = field(
        default=None, metadata={"help": "Write results/<results_name>.json + .log (provenance for README claims); none: no result file."}
    )
    results_dir: str = field(default="results", metadata={"help": "Folder for result files."})

    def __post_init__(self):
        # "none" switches off a results_name a config file sets (a recipe search's variants write none).
        if self.results_name is not None and self.results_name.strip().lower() in ("", "none"):
            self.results_name = None


REQUIRED_KEYS = ("name", "metrics", "headline", "command", "config", "git_sha", "device", "train_seconds", "date")
# The kinds of headline figure, and the metrics each is read from (imdb_llm.report.numbers prints them).
HEADLINES = {
    "test_accuracy": "test_accuracy (+ n_test): a classifier scored on the test split",
    "validation_search": "best_variant, n_variants and the metric that ranked them (metric; best_validation_accuracy unless named): a recipe search that never reads test",
    "padding_benchmark": "bench_dynamic_grouped_samples_per_second vs bench_pad_to_max_length_samples_per_second",
    "precision_benchmark": "bench_bf16_samples_per_second vs bench_fp32_samples_per_second (+ native_bf16)",
    "serving": "clients_N_tokens_per_second: 16 clients against 1 (+ failed_requests, peer_clients_1_tokens_per_second)",
    "perplexity": "validation_perplexity (+ n_validation_tokens): a language model on held-out text",
    "generation": "base_/tuned_ rouge-l, bleu-4, loop_rate, eval_loss: a chat model before and after tuning",
    "throughput": "a speed: the first of the documented tokens/samples-per-second keys the run has",
    "decode_weights": "int4 vs bf16 tokens/s for one request (+ int4_same_tokens_as_fp32)",
    "data_split": "n_validation_with_sibling of n_validation: validation reviews that share a movie with train",
    "medical": "tuned_answer_match (+ base_answer_match), tuned_safety_pass, tuned_invented_entity_rate: a medical assistant measured without a judge model",
    "leak_check": "student_validation_difference_points (+ its ci95) and student_test_difference_points: what a teacher that saw validation adds",
    "faults": "bad_requests_tried, server_errors_5xx, non_openai_error_bodies, orphan_running_seconds, max_stream_gap_during_long_prefill_s: a server under faults",
    "tokenization": "<label>_tokens_per_character (Chinese) or <label>_mean_tokens (+ over_N_share): what each tokenizer spends on a corpus",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# tqdm bars ("45%|####5     | 9/20 [00:01<00:01, 8.1it/s]") and carriage-return redraws.
_PROGRESS_RE = re.compile(r"\d+%\|.*\||\|\s*\d+/\d+ \[|it/s\]|s/it\]")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def git_sha(cwd: str | os.PathLike | None = None) -> str:
    """HEAD's sha, with ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    cwd = str(cwd or repo_root())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GIT_SHA", "unknown")


_CODE_SHA: str | None = None


def code_sha() -> str:
    """The commit of the code this process runs: :func:`git_sha` when first asked (a run asks at
    its start, through :func:`capture_log`), not when its result is written hours later, after the
    working tree may have moved on."""
    global _CODE_SHA
    if _CODE_SHA is None:
        _CODE_SHA = git_sha()
    return _CODE_SHA


def device_description() -> str:
    """What the numbers were measured on, e.g. ``1x NVIDIA H200`` or
    ``cpu (2 cores, x86_64, AMD EPYC, native bf16)``: on a CPU, whether it has native bf16 decides
    how fast bf16 runs, so it is part of the device.

    On a CPU a run limited to fewer threads than cores (``OMP_NUM_THREADS``, or two runs side by
    side) says so, since its speed figures depend on it.
    """
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"{n}x {torch.cuda.get_device_name(0)}"
        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    from imdb_llm.precision import cpu_has_native_bf16, cpu_model_name

    cores = os.cpu_count()
    limit = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads is not None and cores and threads < cores else ""
    name = cpu_model_name()
    model = f", {name}" if name else ""
    bf16 = ", native bf16" if cpu_has_native_bf16() else ", no native bf16"
    return f"cpu ({cores} cores, {platform.machine()}{model}{bf16}{limit})"


def current_command() -> str:
    """The exact command line, as it could be pasted into a shell.

    ``RUN_COMMAND`` (set by the Makefile or a launcher script) wins, because ``sys.argv`` cannot
    see ``make imdb-bert`` or ``accelerate launch``.
    """
    if os.environ.get("RUN_COMMAND"):
        return os.environ["RUN_COMMAND"]
    script = sys.argv[0]
    try:
        script = os.path.relpath(script, repo_root())
    except ValueError:
        pass
    return shlex.join(["python", script, *sys.argv[1:]])


def trim_log(text: str) -> str:
    """Drop progress-bar redraws so a log reads like a log."""
    out: list[str] = []
    for line in _ANSI_RE.sub("", text).replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            line = line.rsplit("\r", 1)[-1]
        if _PROGRESS_RE.search(line):
            continue
        line = line.rstrip()
        if line or (out and out[-1]):  # no runs of blank lines
            out.append(line)
    return "\n".join(out).strip() + "\n"


def validate_result(data: dict[str, Any], source: str = "result") -> None:
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{source}: missing key(s) {', '.join(missing)}")
    if not isinstance(data["metrics"], dict) or not data["metrics"]:
        raise ValueError(f"{source}: 'metrics' must be a non-empty mapping")
    if data["headline"] not in HEADLINES:
        raise ValueError(f"{source}: headline {data['headline']!r} is not one of {', '.join(HEADLINES)}")


def write_result(
    name: str,
    metrics: dict[str, Any],
    *,
    headline: str,
    config: dict[str, Any] | None = None,
    train_seconds: float | None = None,
    log_text: str | None = None,
    results_dir: str | os.PathLike = "results",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``results_dir/name.json`` (and ``name.log`` when a log is given), atomically."""
    if not _NAME_RE.match(name):
        raise ValueError(f"result name {name!r}: use letters, digits, '.', '_' and '-'")
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "name": name,
        "metrics": _jsonable(metrics),
        "headline": headline,
        "command": current_command(),
        "config": _jsonable(config or {}),
        "git_sha": code_sha(),
        "device": device_description(),
        "train_seconds": None if train_seconds is None else round(float(train_seconds), 2),
        "date": _dt.date.today().isoformat(),
    }
    if extra:
        data.update(_jsonable(extra))
    validate_result(data, name)
    target = results_dir / f"{name}.json"
    atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if log_text is not None:
        atomic_write_text(results_dir / f"{name}.log", trim_log(log_text))
    return target


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` writes the file under a temporary name beside ``path``, which is then renamed to
    ``path``: a run cut short never leaves a half-written file where a reader (or a rerun) looks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """The folder version of :func:`atomic_write`: the block writes into a fresh temporary folder beside
    ``path``, which replaces ``path`` only when the block ends without an error. A kill or an exception
    leaves the old folder (or none), never a half-written model or tokenizer where a rerun looks."""
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only still there when the block failed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written atomically (:func:`atomic_write_text`)."""
    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):  # noqa: D401
        for stream in self.streams:
            stream.write(s)
        return len(s)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return False


@contextmanager
def capture_log(path: str | os.PathLike | None) -> Iterator[io.StringIO]:
    """Copy stdout and stderr into a buffer (and ``path`` when given) while still printing them.

    The buffer becomes ``results/<name>.log``; ``path`` is the run log kept in ``output_dir``.
    Entering it also notes the commit the run starts from (:func:`code_sha`).
    """
    code_sha()
    buffer = io.StringIO()
    file = open(path, "a", encoding="utf-8") if path else None
    streams = [buffer] + ([file] if file else [])
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = _Tee(old_out, *streams)
    sys.stderr = _Tee(old_err, *streams)
    # Loggers created before the swap hold the old stream; point transformers' at the tee.
    import logging

    # A handler whose stream was closed (a test harness's captured stream, left on the root logger by a
    # library's basicConfig) is skipped: re-pointing it would flush a closed file.
    handlers = [h for h in logging.getLogger().handlers + logging.getLogger("transformers").handlers
                if isinstance(h, logging.StreamHandler) and not getattr(h.stream, "closed", False)]
    saved = [(h, h.stream) for h in handlers]
    for h, stream in saved:
        h.setStream(sys.stderr if stream is old_err else sys.stdout)
    try:
        yield buffer
    finally:
        for h, stream in saved:
            h.setStream(stream)
        sys.stdout, sys.stderr = old_out, old_err
        if file:
            file.close()
