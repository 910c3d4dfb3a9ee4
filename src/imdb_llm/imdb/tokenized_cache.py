"""Tokenised IMDB splits kept on disk, so a rerun or a resumed run skips tokenisation.

``datasets`` caches ``map`` results only for datasets backed by files; ours are built in memory
(imdb_llm.imdb.data cleans the text first), so nothing would be reused. Here the cache file is named by
what decides its content: the split's rows (the dataset fingerprint, stable across processes),
the tokenizer (its full serialised form: vocabulary, normaliser, templates), the encoding settings
and the source of the encoding code. Change any of them and a new file is written; nothing stale is
ever read. ``datasets`` writes the file under a temporary name and renames it when complete, so a
run killed mid-way leaves no half-written cache behind.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from imdb_llm.cli import none_if_off

DEFAULT_DIR_NAME = "tokenized"  # beside the other caches: <output_dir>/../cache/tokenized


def resolve_cache_dir(setting: str | None, output_dir: str | os.PathLike) -> str | None:
    """``--tokenized_cache_dir``: unset -> beside the run (``outputs/imdb-lstm`` -> ``outputs/cache/tokenized``,
    shared by every run under ``outputs/``); ``none`` -> no cache; else the folder given."""
    if setting is None:
        return str(Path(output_dir).resolve().parent / "cache" / DEFAULT_DIR_NAME)
    return none_if_off(setting)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are call settings the backend remembers from the last call, not
        # part of the tokenizer: leave them out (the caller's settings carry the ones that matter).
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        text = json.dumps(state, sort_keys=True)
    else:  # a slow (Python) tokenizer: its vocabulary and settings
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()), repr(sorted(tokenizer.init_kwargs.items()))])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _code_fingerprint(functions: Iterable[Callable]) -> str:
    sources = []
    for fn in functions:
        try:
            sources.append(inspect.getsource(fn))
        except (OSError, TypeError):
            sources.append(getattr(fn, "__qualname__", repr(fn)))
    return hashlib.sha256("\n".join(sources).encode("utf-8")).hexdigest()


def cache_key(dataset, tokenizer, settings: dict[str, Any], code: Iterable[Callable]) -> str:
    payload = {"rows": dataset._fingerprint, "tokenizer": tokenizer_fingerprint(tokenizer), "settings": settings, "code": _code_fingerprint(code)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def tokenize_cached(dataset, function: Callable, *, tokenizer, cache_dir: str | os.PathLike | None, settings: dict[str, Any],
                    code: Iterable[Callable] = (), name: str = "split", **map_kwargs):
    """``dataset.map(function, batched=True, **map_kwargs)``, read from ``cache_dir`` when the same
    rows were encoded the same way before. ``code``: the functions ``function`` calls to encode,
    whose source is part of the key (``function`` itself always is). ``cache_dir=None``: no cache."""
    if not cache_dir:
        return dataset.map(function, batched=True, **map_kwargs)
    key = cache_key(dataset, tokenizer, settings, [function, *code])
    path = Path(cache_dir) / f"{name}-{key}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    hit = path.is_file()
    encoded = dataset.map(function, batched=True, cache_file_name=str(path), load_from_cache_file=True, new_fingerprint=key, **map_kwargs)
    if hit:
        print(f"tokenised {name} from the cache {path}", flush=True)
    return encoded
