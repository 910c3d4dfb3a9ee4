"""Quantised bases for training: a GGUF base made loadable in 4-bit and trainable
(:func:`quantizable_model_path`), and 4-bit (bitsandbytes NF4) layers kept trainable on the CPU.

Why this exists. On a CPU with AVX512-BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and
later), ``bitsandbytes.nn.Linear4bit.forward`` repacks its weights into a faster *inference*
layout the first time it runs in eval mode without gradients (``_convert_weight_packed_for_cpu``,
``quant_state.packing_format_for_cpu = True``) and never unpacks them for training. A QLoRA run
that evaluates the base model first (its validation loss, its answers) and then trains sends the
training forward through the inference kernel with autograd on, which fails in
``matmul_4bit`` (``result += bias``: "a view of a leaf Variable that requires grad is being used
in an in-place operation"). Seen with bitsandbytes 0.49.2 - 0.50.2; CPUs without AVX512-BF16 and
CUDA never take that path. docs/qlora.md tells the story for users who meet it elsewhere.

The fix here: a model that is going to be trained never packs (:func:`keep_4bit_trainable`).
Packing is not undone on the fly because the inverse is lossy (the absmax scales were cast to
bf16 when packing), so training from a packed model would start from slightly different weights.
"""

from __future__ import annotations

from pathlib import Path

from imdb_llm.results import atomic_folder


def linear4bit_layers(model) -> list:
    """Every bitsandbytes ``Linear4bit`` in ``model`` (peft's LoRA wrappers hold them as base layers)."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes, no 4-bit layers
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def is_packed_for_cpu_inference(layer) -> bool:
    """True when the layer's weights are in bitsandbytes' CPU inference-only layout."""
    state = getattr(layer.weight, "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def keep_4bit_trainable(model) -> int:
    """Stop every 4-bit layer from packing itself for CPU inference; returns how many layers.

    A layer already packed (by an evaluation run before this call) is unpacked with bitsandbytes'
    own inverse, best effort: call this right after loading, before any evaluation.
    """
    layers = linear4bit_layers(model)
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False  # the switch Linear4bit.forward checks before packing
        if is_packed_for_cpu_inference(layer):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu_inverse(layer.weight.data, layer.weight.quant_state)
    return len(layers)


def quantizable_model_path(model: str, cache_dir: str = "outputs/cache") -> str:
    """transformers refuses ``quantization_config`` together with a GGUF file, and refuses to train a
    model loaded from one (it is flagged "quantized with GGUF"). For a GGUF model
    (e.g. ``packaged:smollm2``) de-quantise it once into ``cache_dir`` as safetensors and return
    that folder, which *can* be loaded in 4-bit; any other model string is returned unchanged."""
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer
    from imdb_llm.weights import resolve_model

    path, gguf = resolve_model(model)
    if not gguf:
        return model
    target = Path(cache_dir) / (Path(gguf).stem + "-dequantized")
    if (target / "config.json").is_file():
        return str(target)
    print(f"de-quantising {gguf} once into {target} (GGUF cannot be loaded in 4-bit directly)", flush=True)
    import torch
    from transformers import AutoModelForCausalLM

    lm = load_causal_lm(model, dtype="float32")
    # The GGUF-loaded model is flagged "quantized with gguf" and refuses save_pretrained: copy its
    # (already de-quantised) weights into a plain model built from the same config.
    config = lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(lm.state_dict(), assign=True)
    plain.tie_weights()
    with atomic_folder(target) as tmp:
        plain.save_pretrained(tmp)
        load_tokenizer(model).save_pretrained(tmp)
    return str(target)


def is_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
