"""Loading causal LMs the same way in chat, serve, QLoRA, eval and merge.

``model`` is resolved by :func:`imdb_llm.weights.resolve_model` (hub id, folder, ``.gguf``, or
``packaged:<name>``); transformers de-quantises GGUF into a normal PyTorch model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_llm.cli import UserError
from imdb_llm.weights import resolve_model


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
