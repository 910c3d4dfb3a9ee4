"""Every YAML recipe in configs/ names its script in its header and parses with that script's arguments.

A key renamed in a script (or removed from transformers, like warmup_ratio in 5.x) would otherwise
surface only when someone launches the recipe, possibly on a rented GPU.

Recipes may inherit (issue 52): ``base: <path relative to the file>`` reads that file first and puts the
recipe's values on top; ``null`` drops an inherited key. The loader is tested here on small files, and every
recipe is parsed as it resolves (parse_args reads configs through load_config_file).
"""

import importlib
import re
from pathlib import Path

import pytest
import yaml

from imdb_llm.cli import UserError, load_config_file, parse_args

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
BASES = sorted((REPO / "configs" / "base").glob("*.yaml"))


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
    # What was parsed is the resolved recipe (its base's values included), not the file's own lines.
    resolved = load_config_file(config)
    assert "base" not in merged and resolved.keys() <= merged.keys()
    assert all(merged[k] == v for k, v in resolved.items() if f"--{k}" not in argv)


# -- inheritance (base:) ----------------------------------------------------------------------------


def _own_keys(path: Path) -> dict:
    """The file's own mapping, without following base: (what yaml.safe_load gives)."""
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_recipe_overrides_its_base(tmp_path):
    _write(tmp_path / "base.yaml", "learning_rate: 1.0e-4\nseed: 42\nkernel_sizes: [3, 4, 5]\n")
    child = _write(tmp_path / "child.yaml", "# a recipe\nbase: base.yaml\nlearning_rate: 3.0e-5\noutput_dir: out\n")
    assert load_config_file(child) == {"learning_rate": 3.0e-5, "seed": 42, "kernel_sizes": [3, 4, 5], "output_dir": "out"}
    assert list(load_config_file(child))[:3] == ["learning_rate", "seed", "kernel_sizes"]  # the base's order first


def test_null_in_a_recipe_drops_the_inherited_key(tmp_path):
    _write(tmp_path / "base.yaml", "embedding_init: word2vec\nword2vec_epochs: 5\nseed: 42\n")
    child = _write(tmp_path / "child.yaml", "base: base.yaml\nembedding_init: null\nword2vec_epochs:\n")
    assert load_config_file(child) == {"seed": 42}


def test_a_base_path_is_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    _write(tmp_path / "shared" / "root.yaml", "seed: 1\nlogging_steps: 10\n")
    _write(tmp_path / "shared" / "mid.yaml", "base: root.yaml\nseed: 2\n")  # relative to shared/, not to the recipe
    child = _write(tmp_path / "recipes" / "child.yaml", "base: ../shared/mid.yaml\noutput_dir: out\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nor to the working directory
    assert load_config_file(child) == {"seed": 2, "logging_steps": 10, "output_dir": "out"}
    assert load_config_file(Path("..", "recipes", "child.yaml")) == load_config_file(child)


def test_a_cycle_of_bases_is_refused_with_the_files_named(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\nseed: 1\n")
    _write(tmp_path / "b.yaml", "base: c.yaml\nseed: 2\n")
    _write(tmp_path / "c.yaml", "base: a.yaml\nseed: 3\n")
    with pytest.raises(UserError) as excinfo:
        load_config_file(tmp_path / "a.yaml")
    message = str(excinfo.value)
    assert all(name in message for name in ("a.yaml", "b.yaml", "c.yaml")), message
    _write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(UserError, match="self.yaml"):
        load_config_file(tmp_path / "self.yaml")


def test_a_missing_or_malformed_base_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config_file(_write(tmp_path / "child.yaml", "base: nowhere.yaml\n"))
    with pytest.raises(UserError, match="one config file path"):
        load_config_file(_write(tmp_path / "two.yaml", "base: [a.yaml, b.yaml]\n"))


def test_parse_args_follows_base(tmp_path):
    """A script reads a recipe through parse_args; the inherited values reach its dataclasses."""
    script = _load_script(REPO / "scripts" / "train_tokenizer.py")
    _write(tmp_path / "base.yaml", "vocab_size: 1234\nmin_frequency: 3\nlowercase: false\n")
    child = _write(tmp_path / "child.yaml", "base: base.yaml\nmin_frequency: 5\nlowercase: null\n")
    tokenizer_args, *_, merged = parse_args(tuple(script.argument_types()), [str(child)])
    default = type(tokenizer_args)().lowercase
    assert (tokenizer_args.vocab_size, tokenizer_args.min_frequency, tokenizer_args.lowercase) == (1234, 5, default)
    assert default is True and "lowercase" not in merged and "base" not in merged


def test_every_base_is_shared_and_stays_out_of_the_recipe_glob():
    """configs/base/ holds the shared parts; each is the base of some recipe (directly or through another)."""
    assert BASES, "configs/base/ is empty"
    used = set()
    for config in CONFIGS:
        target = config
        while base := _own_keys(target).get("base"):
            target = target.parent / base
            used.add(target.resolve())
    unused = [b.name for b in BASES if b.resolve() not in used]
    assert not unused, f"configs/base/ files no recipe inherits: {unused}"
    assert not any(c.parent.name == "base" for c in CONFIGS)


@pytest.mark.parametrize("config", [c for c in CONFIGS if "base" in _own_keys(c)], ids=lambda p: p.name)
def test_a_recipe_states_only_how_it_differs_from_its_base(config):
    own = _own_keys(config)
    inherited = load_config_file(config.parent / own.pop("base"))
    repeated = sorted(k for k, v in own.items() if k in inherited and inherited[k] == v and type(inherited[k]) is type(v))
    assert not repeated, f"{config.name} repeats what its base already sets: {repeated}"
    assert all(k in inherited for k, v in own.items() if v is None), f"{config.name}: null for a key its base does not set"
