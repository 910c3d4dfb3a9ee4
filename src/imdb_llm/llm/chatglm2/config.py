"""ChatGLM2-6B's model shape in transformers' native ``GlmConfig`` terms: the one home of it.

:data:`CHATGLM2_6B` (THUDM/chatglm2-6b's ``config.json`` in Glm terms) is what both benchmarks
(``bench_qlora.py``, ``bench_decode.py``) build with random weights; :func:`glm_config_from_official`
maps any official ChatGLM2 ``config.json`` to a ``GlmConfig`` for the converter.
"""

from __future__ import annotations

from typing import Any

from imdb_llm.cli import UserError

# THUDM/chatglm2-6b config.json in transformers' Glm terms (hidden 4096, 28 layers, 32 query heads,
# 2 KV heads, FFN 13696, vocab 65024, rotary on half of each head).
CHATGLM2_6B = dict(vocab_size=65024, hidden_size=4096, intermediate_size=13696, num_hidden_layers=28, num_attention_heads=32,
                   num_key_value_heads=2, head_dim=128, partial_rotary_factor=0.5, rms_norm_eps=1e-5, attention_bias=True,
                   max_position_embeddings=32768, tie_word_embeddings=False, pad_token_id=0, eos_token_id=2, bos_token_id=1)

# Parameters of the official implementation we cannot represent: name -> why.
_UNSUPPORTED_FLAGS = {
    "add_bias_linear": "biased dense/MLP linears (native GLM has bias only on q/k/v)",
    "apply_residual_connection_post_layernorm": "residual taken after the layer norm",
}

def _rope_parameters(official: dict[str, Any]) -> dict[str, Any]:
    """Rotary on the first half of each head (interleaved pairs), base 10,000.

    chatglm2-6b-32k sets ``rope_ratio`` (16): its official code divides the positions by it, which is
    position interpolation, i.e. transformers' "linear" scaling. (ChatGLM3's 32K models multiply the
    base by ``rope_ratio`` instead; that code is not ChatGLM2's and this converter does not claim it.)
    """
    ratio = float(official.get("rope_ratio", 1.0) or 1.0)
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    if ratio != 1.0:
        params.update(rope_type="linear", factor=ratio)
    return params


def glm_config_from_official(official: dict[str, Any], dtype: str | None = None):
    """Map an official ``config.json`` (dict) to a ``GlmConfig``; refuse what GLM cannot run."""
    from transformers import GlmConfig

    check_supported_config(official)
    heads = official["num_attention_heads"]
    head_dim = official.get("kv_channels") or official["hidden_size"] // heads
    kv_heads = official.get("multi_query_group_num", heads) if official.get("multi_query_attention") else heads
    if heads % kv_heads:
        raise UserError(f"num_attention_heads {heads} is not a multiple of multi_query_group_num {kv_heads}")
    return GlmConfig(
        vocab_size=official["padded_vocab_size"],
        hidden_size=official["hidden_size"],
        intermediate_size=official["ffn_hidden_size"],
        num_hidden_layers=official["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        hidden_act="silu",
        attention_dropout=float(official.get("attention_dropout", 0.0)),
        max_position_embeddings=official.get("seq_length", 2048),
        rms_norm_eps=official.get("layernorm_epsilon", 1e-5),  # GlmConfig's default is GLM-4's 1.5625e-7
        use_cache=True,
        tie_word_embeddings=bool(official.get("tie_word_embeddings", False)),
        rope_parameters=_rope_parameters(official),
        pad_token_id=official.get("pad_token_id", 0),  # GLM-4 defaults are 151329 / [151329, ...]
        eos_token_id=official.get("eos_token_id", 2),
        bos_token_id=None,
        attention_bias=bool(official.get("add_qkv_bias", True)),
        dtype=dtype or official.get("torch_dtype", "float32"),
        architectures=["GlmForCausalLM"],
    )


def check_supported_config(official: dict[str, Any]) -> None:
    """Raise ``UserError`` for official options the native model has no equivalent for."""
    if official.get("model_type") not in ("chatglm", None):
        raise UserError(f"model_type is {official.get('model_type')!r}, expected 'chatglm' (a ChatGLM2 config.json)")
    missing = [k for k in ("hidden_size", "num_layers", "num_attention_heads", "ffn_hidden_size", "padded_vocab_size") if k not in official]
    if missing:
        raise UserError(f"config.json lacks {', '.join(missing)}: not a ChatGLM2 checkpoint")
    if official.get("pre_seq_len"):
        raise UserError(
            f"pre_seq_len={official['pre_seq_len']}: P-tuning v2 prefix checkpoints are not supported "
            "(the native model has no prefix encoder); convert the base model and train a LoRA instead"
        )
    if official.get("quantization_bit"):
        raise UserError(
            f"quantization_bit={official['quantization_bit']}: quantised (int4/int8) checkpoints cannot be converted; "
            "convert the fp16 checkpoint and quantise at load time (--load_in_4bit / --load_in_8bit)"
        )
    for key, what in _UNSUPPORTED_FLAGS.items():
        if official.get(key):
            raise UserError(f"{key}=true ({what}) is not supported by GlmForCausalLM")
    if official.get("rmsnorm") is False:
        raise UserError("rmsnorm=false (LayerNorm blocks) is not supported by GlmForCausalLM")
    if official.get("post_layer_norm") is False:
        raise UserError("post_layer_norm=false (no final norm) is not supported by GlmForCausalLM")
