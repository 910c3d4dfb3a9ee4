"""ChatGLM2-6B on native transformers: convert an official checkpoint to ``GlmForCausalLM``.

Why: the official ChatGLM2 remote code pins transformers 4.30 and breaks on 5.x (tokenizer
``_pad()`` signature, config attributes, cache helpers). Its network is exactly what the native
``GlmForCausalLM`` computes (pre-norm RMSNorm blocks, multi-query attention with a q/k/v bias,
rotary on the first half of each head in interleaved pairs, SwiGLU MLP with a fused gate/up
matrix, untied output layer), so a checkpoint only needs renaming and one split:

=====================================================================  =====================================================
official (``transformer.`` prefix)                                      native ``GlmForCausalLM``
=====================================================================  =====================================================
``embedding.word_embeddings.weight``                                    ``model.embed_tokens.weight``
``encoder.layers.N.input_layernorm.weight``                             ``model.layers.N.input_layernorm.weight``
``encoder.layers.N.self_attention.query_key_value.{weight,bias}``       ``model.layers.N.self_attn.{q,k,v}_proj.{weight,bias}``
``encoder.layers.N.self_attention.dense.weight``                        ``model.layers.N.self_attn.o_proj.weight``
``encoder.layers.N.post_attention_layernorm.weight``                    ``model.layers.N.post_attention_layernorm.weight``
``encoder.layers.N.mlp.dense_h_to_4h.weight``                           ``model.layers.N.mlp.gate_up_proj.weight``
``encoder.layers.N.mlp.dense_4h_to_h.weight``                           ``model.layers.N.mlp.down_proj.weight``
``encoder.final_layernorm.weight``                                      ``model.norm.weight``
``output_layer.weight``                                                 ``lm_head.weight``
``rotary_pos_emb.inv_freq``                                             (recomputed from the config; checked, dropped)
=====================================================================  =====================================================

``query_key_value`` rows are ``[q (heads*d) | k (groups*d) | v (groups*d)]`` with multi-query
attention; without it they are per head ``[q_h | k_h | v_h]``. The tokenizer is rebuilt from
``tokenizer.model`` as a ``tokenizers`` BPE with byte fallback that gives the official ids.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from imdb_llm.cli import UserError
from imdb_llm.llm.chatglm2.config import glm_config_from_official
from imdb_llm.llm.chatglm2.tokenizer import build_fast_tokenizer, save_tokenizer
from imdb_llm.results import atomic_folder

MAX_SHARD_BYTES = 2 * 1024**3


# -------------------------------------------------------------------------------------- weights
def _layer_rules():
    p = r"transformer\.encoder\.layers\.(\d+)\."
    return [
        (re.compile(p + r"input_layernorm\.weight$"), "model.layers.{}.input_layernorm.weight"),
        (re.compile(p + r"post_attention_layernorm\.weight$"), "model.layers.{}.post_attention_layernorm.weight"),
        (re.compile(p + r"self_attention\.dense\.weight$"), "model.layers.{}.self_attn.o_proj.weight"),
        (re.compile(p + r"mlp\.dense_h_to_4h\.weight$"), "model.layers.{}.mlp.gate_up_proj.weight"),
        (re.compile(p + r"mlp\.dense_4h_to_h\.weight$"), "model.layers.{}.mlp.down_proj.weight"),
    ]


_FIXED = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
_QKV = re.compile(r"transformer\.encoder\.layers\.(\d+)\.self_attention\.query_key_value\.(weight|bias)$")
_RULES = _layer_rules()


def split_qkv(tensor, heads: int, kv_heads: int, head_dim: int, multi_query: bool):
    """Split a fused ``query_key_value`` weight ``[rows, hidden]`` or bias ``[rows]`` into q, k, v."""
    if multi_query:
        q_rows, kv_rows = heads * head_dim, kv_heads * head_dim
        if tensor.shape[0] != q_rows + 2 * kv_rows:
            raise UserError(f"query_key_value has {tensor.shape[0]} rows, expected {q_rows + 2 * kv_rows}")
        q, k, v = tensor.split([q_rows, kv_rows, kv_rows], dim=0)
        return q, k, v
    # Without multi-query attention the rows are grouped per head: [q_h, k_h, v_h] for each head.
    if tensor.shape[0] != 3 * heads * head_dim:
        raise UserError(f"query_key_value has {tensor.shape[0]} rows, expected {3 * heads * head_dim}")
    per_head = tensor.reshape(heads, 3, head_dim, *tensor.shape[1:])
    return tuple(per_head[:, i].reshape(heads * head_dim, *tensor.shape[1:]) for i in range(3))


def convert_tensor(name: str, tensor, official: dict[str, Any]) -> list[tuple[str, Any]]:
    """Official (name, tensor) -> native [(name, tensor)]; [] for tensors the native model drops."""
    if name in _FIXED:
        return [(_FIXED[name], tensor)]
    m = _QKV.match(name)
    if m:
        heads = official["num_attention_heads"]
        head_dim = official.get("kv_channels") or official["hidden_size"] // heads
        mq = bool(official.get("multi_query_attention"))
        kv_heads = official.get("multi_query_group_num", heads) if mq else heads
        q, k, v = split_qkv(tensor, heads, kv_heads, head_dim, mq)
        base = f"model.layers.{m.group(1)}.self_attn"
        return [(f"{base}.q_proj.{m.group(2)}", q), (f"{base}.k_proj.{m.group(2)}", k), (f"{base}.v_proj.{m.group(2)}", v)]
    for rule, target in _RULES:
        m = rule.match(name)
        if m:
            return [(target.format(m.group(1)), tensor)]
    if name.endswith("rotary_pos_emb.inv_freq"):
        _check_inv_freq(tensor, official)
        return []
    if ".prefix_encoder." in name:
        raise UserError(f"{name}: P-tuning v2 prefix weights are not supported")
    if name.endswith("weight_scale"):
        raise UserError(f"{name}: quantised (int4) checkpoints cannot be converted; use the fp16 checkpoint")
    if name.endswith(".bias") and ("dense" in name):
        raise UserError(f"{name}: biased dense/MLP linears (add_bias_linear) are not supported")
    raise UserError(f"unexpected tensor {name!r}: not part of a ChatGLM2 checkpoint")


def _check_inv_freq(inv_freq, official: dict[str, Any]) -> None:
    """The stored rotary frequencies must be base 10,000 over head_dim/2 (``rope_ratio`` scales positions, not these)."""
    import torch

    heads = official["num_attention_heads"]
    head_dim = official.get("kv_channels") or official["hidden_size"] // heads
    dim = head_dim // 2
    expected = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    got = inv_freq.float().flatten()
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-6):
        raise UserError("rotary_pos_emb.inv_freq does not match head_dim/2 rotary with base 10000: unsupported rotary variant")


# ---------------------------------------------------------------------------------- checkpoints
def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of an official checkpoint, safetensors preferred, in shard order."""
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(p for p in folder.glob(pattern) if p.name != "expected.safetensors")
        if files:
            return files
    raise UserError(f"{folder}: no model*.safetensors or pytorch_model*.bin weights")


def iter_checkpoint(folder: Path) -> Iterator[tuple[str, Any]]:
    """Yield (name, tensor) shard by shard, so only one shard is ever in memory.

    ``.bin`` shards are read with ``weights_only=True``: tensors only, no pickled code runs.
    """
    import torch
    from safetensors import safe_open

    for path in checkpoint_files(folder):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        else:
            try:
                state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # pickle.UnpicklingError for anything beyond plain tensors
                raise UserError(f"{path.name}: not a plain tensor checkpoint ({str(exc).splitlines()[0]})") from exc
            for name in list(state):
                yield name, state.pop(name)
            del state


def _dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return None
    try:
        return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]
    except KeyError:
        raise UserError(f"--dtype must be auto, float16, bfloat16 or float32, not {name!r}") from None


class _ShardWriter:
    """Collect tensors and flush them to ``model-XXXXX.safetensors`` once a shard is full."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[str, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total_bytes += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        fname = f"shard-{len(self.shards):05d}.safetensors"
        save_file(self.pending, str(self.folder / fname), metadata={"format": "pt"})
        self.shards.append((fname, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[str]:
        """Rename shards to the hub layout and write the index when there are several."""
        self.flush()
        n = len(self.shards)
        if n == 1:
            (self.folder / self.shards[0][0]).rename(self.folder / "model.safetensors")
            return self.shards[0][1]
        weight_map, names = {}, []
        for i, (fname, keys) in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.folder / fname).rename(self.folder / final)
            weight_map.update({k: final for k in keys})
            names += keys
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        return names


def expected_native_names(config) -> set[str]:
    """Every parameter name ``GlmForCausalLM(config)`` has (built on the meta device)."""
    import torch
    from transformers import GlmForCausalLM

    with torch.device("meta"):
        model = GlmForCausalLM(config)
    names = set(model.state_dict())
    if config.tie_word_embeddings:
        names.discard("lm_head.weight")
    return names


# ------------------------------------------------------------------------------------- download
def fetch_official(source: str) -> Path:
    """A local folder as is; otherwise a hub id, downloaded without the remote-code ``.py`` files."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise UserError(f"{source}: not a checkpoint folder (nor a hub id like THUDM/chatglm2-6b)")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            source,
            allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                            "pytorch_model.bin.index.json", "tokenizer.model", "tokenizer_config.json"],
        )
    except Exception as exc:  # offline mode, no network, unknown repo, gated repo, ...
        raise UserError(f"{source}: cannot download from the hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'offline?'})") from exc
    return Path(local)


# ------------------------------------------------------------------------------------- convert
def convert_checkpoint(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dtype: str | None = "auto",
    overwrite: bool = False,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    log=print,
) -> Path:
    """Convert an official ChatGLM2 folder into a native ``GlmForCausalLM`` folder.

    Everything is validated and written into a temporary folder next to the output, which is
    renamed into place only when complete: a refused or failed conversion leaves nothing behind.
    """
    import torch
    from transformers import GenerationConfig

    src = fetch_official(str(input_dir))
    out = Path(output_dir)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise UserError(f"{src}: no config.json")
    try:
        official = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{config_path}: not valid JSON ({exc})") from exc
    target_dtype = _dtype(dtype)
    dtype_name = str(target_dtype).replace("torch.", "") if target_dtype is not None else official.get("torch_dtype", "float32")
    config = glm_config_from_official(official, dtype=dtype_name)
    files = checkpoint_files(src)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    expected = expected_native_names(config)

    with atomic_folder(out) as tmp:  # a failed or killed conversion leaves no half-written folder
        writer = _ShardWriter(tmp, max_shard_bytes)
        log(f"converting {len(files)} shard(s) from {src}")
        for name, tensor in iter_checkpoint(src):
            if not tensor.is_floating_point():
                raise UserError(f"{name}: {tensor.dtype} weights (a quantised checkpoint?) cannot be converted")
            for new_name, new_tensor in convert_tensor(name, tensor, official):
                if new_name not in expected:
                    raise UserError(f"{name} -> {new_name}: no such parameter in GlmForCausalLM for this config")
                writer.add(new_name, new_tensor.to(target_dtype) if target_dtype is not None else new_tensor)
        written = writer.finish()
        missing = expected - set(written)
        if missing:
            raise UserError(f"checkpoint lacks {len(missing)} tensor(s), e.g. {sorted(missing)[:3]}")
        dupes = len(written) - len(set(written))
        if dupes:
            raise UserError(f"checkpoint holds {dupes} duplicated tensor(s)")
        config.save_pretrained(tmp)
        # ChatGLM2's chat() defaults: nucleus sampling, top_p 0.8, temperature 0.8.
        GenerationConfig(
            eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
            do_sample=True, top_p=0.8, temperature=0.8,
        ).save_pretrained(tmp)
        if (src / "tokenizer.model").is_file():
            save_tokenizer(build_fast_tokenizer(src / "tokenizer.model", config.max_position_embeddings), tmp)
            log("tokenizer: fast tokenizer + ChatGLM2 chat template written")
        else:
            log("tokenizer: no tokenizer.model in the input, none written")
    params = sum(torch.Size(s).numel() for s in _shapes(out))
    log(f"wrote {out} ({params:,} parameters, {dtype_name})")
    return out


def _shapes(folder: Path):
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield f.get_slice(name).get_shape()
