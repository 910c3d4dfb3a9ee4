"""The house plan (issue 32), checked on every run: the tree shows the tracks, modules and functions
stay small, scripts find the package because it is installed (never through ``sys.path``), test
factories stay under ``tests/``, and no block of six lines is written twice in ``src/`` or ``scripts/``.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "imdb_llm"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
MIN_REPEATED_LINES = 6


def _code_files() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py")])


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_the_tree_shows_the_tracks():
    for folder in ("imdb", "imdb/models", "llm", "llm/chatglm2", "llm/sft", "serve", "report"):
        assert (PACKAGE / folder / "__init__.py").is_file(), f"src/imdb_llm/{folder} is not a package"
    for module in ("serve/protocol.py", "serve/api_server.py", "serve/engine.py", "serve/scheduler.py", "serve/batch.py", "llm/prompts.py"):
        assert (PACKAGE / module).is_file(), module
    # The flat modules the tracks replaced are gone, with no re-export shim left behind.
    for old in ("serving.py", "serving_api.py", "serving_engine.py", "serving_batch.py", "serving_decode.py", "chatglm2.py", "llm.py",
                "report.py", "data.py", "finetune.py", "scratch.py", "training.py"):
        assert not (PACKAGE / old).exists(), f"src/imdb_llm/{old} should live in its track's folder"


def test_shared_modules_do_not_import_a_track():
    """Top-level modules are shared plumbing: a track may import them, never the other way round
    (report/ reads result files only)."""
    tracks = ("imdb_llm.imdb", "imdb_llm.llm", "imdb_llm.serve")
    for path in [*PACKAGE.glob("*.py"), *(PACKAGE / "report").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(tracks), f"{_rel(path)} imports {node.module}"


def test_imdb_track_does_not_import_the_llm_or_serving_tracks():
    for path in (PACKAGE / "imdb").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("imdb_llm.llm", "imdb_llm.serve")), f"{_rel(path)} imports {node.module}"


def test_serving_does_not_depend_on_fine_tuning():
    """The server decodes with :mod:`imdb_llm.llm.generation`, as chat and evaluation do; it never
    reaches into the fine-tuning package (issue 52)."""
    for path in (PACKAGE / "serve").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("imdb_llm.llm.sft"), f"{_rel(path)} imports {node.module}"


MAX_SCRIPT_LINES = 250


def test_scripts_only_parse_and_call_the_package():
    """A script parses its arguments and calls one function of the package, where the recipe lives
    (issue 52): none is longer than a screenful or two."""
    for path in (REPO / "scripts").glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_SCRIPT_LINES, f"{_rel(path)}: {lines} lines (at most {MAX_SCRIPT_LINES}); move the recipe into src/imdb_llm"


def test_one_flag_names_the_model():
    """Every command-line argument that names the model to load is --model_name_or_path (--model stays
    as an alias where it was the name)."""
    for path in _code_files():
        for cls in (n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.ClassDef)):
            for node in cls.body:
                if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in ("model", "model_path", "model_name")
                        and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "field"):
                    raise AssertionError(f"{_rel(path)}:{node.lineno} {cls.name}.{node.target.id}: name the flag model_name_or_path")


def test_one_precision_default():
    """Every --mixed_precision starts at auto (bf16 autocast where the hardware has it natively; a recipe
    that wants fp32 says mixed_precision: "no"), or unset where TrainingArguments' own bf16/fp16 flags
    decide (run_scratch.py's GPU recipes)."""
    for path in _code_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "mixed_precision" and isinstance(node.value, ast.Call):
                default = next((k.value for k in node.value.keywords if k.arg == "default"), None)
                assert isinstance(default, ast.Constant) and default.value in ("auto", None), f"{_rel(path)}:{node.lineno} mixed_precision defaults to something else"


@pytest.mark.parametrize("path", _code_files(), ids=_rel)
def test_module_and_function_sizes(path):
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)}: {lines} lines (at most {MAX_MODULE_LINES}); split it"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{_rel(path)}:{node.lineno} {node.name}() is {length} lines (at most {MAX_FUNCTION_LINES})"


def test_scripts_do_not_touch_sys_path():
    """`make setup` installs the package (pip install -e .): scripts import it like any other."""
    for path in (REPO / "scripts").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                name = f"{getattr(node.value.value, 'id', '')}.{node.value.attr}.{node.attr}"
                assert name not in ("sys.path.insert", "sys.path.append"), f"{_rel(path)}:{node.lineno} edits sys.path"


def test_no_test_factory_in_src_or_scripts():
    for path in _code_files():
        assert "make_tiny" not in path.read_text(encoding="utf-8"), f"{_rel(path)}: test factories live in tests/tiny_models.py"
    for path in (REPO / "docs").glob("*.md"):
        assert "imdb_llm.chatglm2.make_tiny" not in path.read_text(encoding="utf-8"), f"{_rel(path)} presents a test factory as API"


def test_the_setup_target_installs_the_package():
    """Scripts rely on the installed package, so `make setup` must install it (editable)."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    setup = makefile.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"pip install .*-e '\.\[test\]'", setup), setup


# -- repeated blocks -------------------------------------------------------------------------------
_KWARG_OR_FIELD = re.compile(r"^N (=|:) .*,$|^N : .*= N \(|^N : N( \| N)* = ")


def _logical_lines(path: Path, shape: bool) -> list[tuple[int, str]]:
    """(line number, tokens) of each logical line, without comments, docstrings and imports. With
    ``shape``, names become N, strings S and numbers 0 (the same code with other names matches), and
    keyword-argument lines and dataclass fields, which are shaped alike by nature, are left out."""
    out, current, start = [], [], None
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type in (tokenize.NL, tokenize.NEWLINE):
            line = " ".join(current)
            docstring = len(current) == 1 and (current[0] == "S" or current[0].startswith(('"', "'")))
            if current and current[0] not in ("import", "from", "@") and not docstring and not (shape and _KWARG_OR_FIELD.match(line)):
                out.append((start, line))
            current, start = [], None
            continue
        if tok.type in (tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        start = start or tok.start[0]
        if shape and tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            current.append("N")
        elif shape and tok.type == tokenize.STRING:
            current.append("S")
        elif shape and tok.type == tokenize.NUMBER:
            current.append("0")
        else:
            current.append(tok.string)
    return out


def repeated_blocks(paths: list[Path], shape: bool, window: int = MIN_REPEATED_LINES) -> list[list[str]]:
    """Places where the same ``window`` logical lines (or the same shape, with ``shape``) occur twice or more."""
    seen = defaultdict(list)
    for path in paths:
        lines = _logical_lines(path, shape)
        for i in range(len(lines) - window + 1):
            block = tuple(text for _, text in lines[i:i + window])
            if sum(len(t) for t in block) >= 60:  # six closing brackets are not a repeated idea
                seen[block].append(f"{_rel(path)}:{lines[i][0]}")
    return [places for places in seen.values() if len(places) > 1]


def test_no_block_of_six_lines_is_repeated():
    repeats = repeated_blocks(_code_files(), shape=False)
    assert not repeats, "the same six lines twice: give them one home\n" + "\n".join(", ".join(p) for p in repeats)


def test_no_block_of_six_lines_is_repeated_with_other_names():
    repeats = repeated_blocks(_code_files(), shape=True)
    assert not repeats, "the same six lines with other names: give them one home\n" + "\n".join(", ".join(p) for p in repeats)


def test_the_repeat_detector_sees_renamed_copies(tmp_path):
    body = "def f(a, b):\n    x = a + b\n    y = x * 2\n    if y > 10:\n        y = y - a\n    z = [y] * b\n    return z, x, y\n"
    (tmp_path / "one.py").write_text(body)
    (tmp_path / "two.py").write_text(body.replace("x", "u").replace("y", "v").replace("f(", "g("))
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert repeated_blocks([tmp_path / "one.py", tmp_path / "two.py"], shape=True)
        assert not repeated_blocks([tmp_path / "one.py", tmp_path / "two.py"], shape=False)
    finally:
        REPO = saved


def test_configs_inherit_and_keep_history_in_the_docs():
    """Recipes state how they differ from a shared base (``base:``, issue 52), and long comments (measured
    times, the searches behind a value) live in docs/recipes.md, not in the YAML."""
    import yaml

    recipes = sorted((REPO / "configs").glob("*.yaml"))
    inheriting = [p.name for p in recipes if "base" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]
    assert len(inheriting) >= 10, f"only {len(inheriting)} configs/*.yaml use base: {inheriting}"
    for path in sorted((REPO / "configs").rglob("*.y*ml")):
        comments = sum("#" in line for line in path.read_text(encoding="utf-8").splitlines())
        assert comments <= 15, f"{_rel(path)}: {comments} comment lines (at most 15); move the history to docs/recipes.md"
    assert (REPO / "docs" / "recipes.md").is_file()
