"""Command-line plumbing every script shares: config file + CLI overrides, one-line errors.

Scripts follow transformers' ``examples/pytorch`` shape: their arguments are dataclasses parsed
by ``HfArgumentParser``. On top of that a script accepts a YAML or JSON config file as its first
argument (or ``--config FILE``); every key becomes a ``--key value`` flag placed *before* the
real command-line flags, so ``python scripts/x.py configs/x.yaml --learning_rate 1e-4`` means
"the config, with the learning rate overridden".
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class UserError(Exception):
    """A problem with what the user gave us (paths, data, flags). Printed as one line, exit 2."""


def none_if_off(value: str | None) -> str | None:
    """A path-like setting, or None where it is switched off: unset, empty or "none" (how a command
    line or a config file turns off a stage another config sets)."""
    return None if value is None or str(value).strip().lower() in ("", "none") else value


def load_config_file(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a flat YAML/JSON mapping of argument names to values.

    ``base: other.yaml`` (a path relative to this file) inherits that config: its values first, this
    file's on top, so a recipe states only how it differs from its sibling. A value of ``null`` drops
    the inherited key (the script's own default applies)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise UserError(f"{path}: 'base:' goes round in a circle ({' -> '.join(p.name for p in (*_seen, path.resolve()))})")
    data = _read_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"{path}: 'base:' takes one config file path, got {base!r}")
    merged = load_config_file(path.parent / base, (*_seen, path.resolve()))
    merged.update(data)
    return {k: v for k, v in merged.items() if v is not None}


def _read_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise UserError(f"{path}: not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of argument names to values, got {type(data).__name__}")
    return data


def config_to_argv(config: dict[str, Any]) -> list[str]:
    """Turn ``{"epochs": 3, "kernel_sizes": [3, 4, 5]}`` into ``--epochs 3 --kernel_sizes 3 4 5``."""
    argv: list[str] = []
    for key, value in config.items():
        if value is None:
            continue
        flag = f"--{key}"
        if isinstance(value, bool):
            argv += [flag, str(value).lower()]
        elif isinstance(value, (list, tuple)):
            if value:
                argv += [flag, *[str(v) for v in value]]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def split_config_argv(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Find the config file (first positional ``*.yaml`` or ``--config FILE``) in argv."""
    argv = list(argv)
    if argv and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise UserError("--config needs a file path")
        return argv[i + 1], argv[:i] + argv[i + 2 :]
    return None, argv


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None):
    """Parse ``[config.yaml] [--key value ...]`` into the given dataclasses.

    Returns a tuple of dataclass instances, followed by the merged plain-dict config that was
    used (handy for writing into result files).
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, overrides = split_config_argv(argv)
    config = load_config_file(config_path) if config_path else {}
    parser = HfArgumentParser(dataclass_types)
    known = {action.dest for action in parser._actions}
    unknown = sorted(k for k in config if k not in known)
    if unknown:
        raise UserError(f"{config_path}: unknown argument(s) {', '.join(unknown)}")
    try:
        parsed = parser.parse_args_into_dataclasses(args=config_to_argv(config) + overrides)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from exc
    _no_pin_memory_without_accelerator(parsed)
    merged = dict(config)
    merged.update(_overrides_as_dict(overrides))
    if config_path:
        merged["_config_file"] = str(config_path)
    return (*parsed, merged)


def _no_pin_memory_without_accelerator(parsed) -> None:
    """Pinned memory only speeds up copies to an accelerator; without one, every DataLoader warns
    about it. Turn it off there (it changes nothing else)."""
    if not any(hasattr(obj, "dataloader_pin_memory") for obj in parsed):
        return
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator.is_available() if accelerator is not None else torch.cuda.is_available():
        return
    for obj in parsed:
        if getattr(obj, "dataloader_pin_memory", False):
            obj.dataloader_pin_memory = False


def _overrides_as_dict(overrides: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    key = None
    for token in overrides:
        if token.startswith("--"):
            key = token[2:].replace("-", "_")
            out[key] = True
        elif key is not None:
            out[key] = token if out[key] is True else [*(out[key] if isinstance(out[key], list) else [out[key]]), token]
    return out


def run_main(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``main`` and turn user-facing errors into one line on stderr and exit 2.

    Programming errors still raise with a traceback: those are bugs, not bad input.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print("error: " + " ".join(str(exc).split("\n")), file=sys.stderr)
            sys.exit(2)

    return wrapper
