"""Every YAML recipe in configs/ names its script in its header and parses with that script's arguments.

A key renamed in a script (or removed from transformers, like warmup_ratio in 5.x) would otherwise
surface only when someone launches the recipe, possibly on a rented GPU.
"""

import importlib
import re
from pathlib import Path

import pytest

from imdb_llm.cli import parse_args

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _header(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines[: next((i for i, l in enumerate(lines) if not l.startswith("#")), len(lines))])


def _script_for(config: Path) -> Path:
    match = re.search(rf"scripts/(\w+)\.py\s+configs/{re.escape(config.name)}", _header(config))
    assert match, f"{config.name}: its header does not show the command that runs it (scripts/<x>.py configs/{config.name})"
    return REPO / "scripts" / f"{match.group(1)}.py"


def _load_script(path: Path):
    return importlib.import_module(path.stem)  # scripts/ is on pytest's pythonpath


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_with_its_script(config):
    types = tuple(_load_script(_script_for(config)).argument_types())
    argv = [str(config)]
    if any(t.__name__ == "TrainingArguments" for t in types):
        # GPU recipes ask for bf16/TF32, which CPU-only TrainingArguments refuse; the rest is checked as written.
        argv += ["--use_cpu", "true", "--bf16", "false", "--fp16", "false", "--tf32", "false"]
    *parsed, merged = parse_args(types, argv)
    assert len(parsed) == len(types) and merged["_config_file"] == str(config)
