"""4-bit (bitsandbytes NF4) models on the CPU: keep the weights in a layout that can be trained.

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
