#!/usr/bin/env python
"""QLoRA training speed and peak memory for a ChatGLM2-6B-shaped model with random weights.

No checkpoint is needed: the model is built on the ``meta`` device and every linear layer is
filled with random bf16 weights and quantised to NF4 (double quantisation) one at a time, so
host RAM never holds the 12 GiB bf16 model. LoRA (r=8 by default) goes on all linear layers of
the decoder; the step is forward + backward + paged 8-bit AdamW on batch x seq random tokens.

Variants (run in this order, each on a freshly built model, peak memory reset between them):

* ``textbook`` - what the usual peft + bitsandbytes recipe does: ``model(input_ids, labels=...)``
  (full fp32 logits, 4 x 1024 x 65024 x 4 B = 1 GiB, plus their gradient), every layer checkpointed,
  eager attention.
* ``fast`` - SDPA attention, chunked cross-entropy from the hidden states (logits recomputed per
  chunk, never materialised whole), activation checkpointing on only ``--checkpoint_layers``
  layers (the rest keep activations: speed for memory), optional ``torch.compile`` per layer.

    python scripts/bench_qlora.py --results_name qlora-chatglm2-6b-speed      # on the GPU
    python scripts/bench_qlora.py --tiny --steps 2 --warmup_steps 1           # CPU smoke test
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass, field


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.chatglm2.config import CHATGLM2_6B
from imdb_llm.results import ResultArguments, capture_log, write_result

TINY = dict(CHATGLM2_6B, vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, head_dim=16)

VARIANTS = {
    "textbook": dict(attn="eager", chunked_ce=False, all_layers_checkpointed=True),
    "fast": dict(attn="sdpa", chunked_ce=True, all_layers_checkpointed=False),
}


@dataclass
class BenchArguments:
    tiny: bool = field(default=False, metadata={"help": "A 2-layer toy of the same shape family (CPU smoke test)."})
    batch_size: int = field(default=4, metadata={"help": "Sequences per step."})
    seq_len: int = field(default=1024, metadata={"help": "Tokens per sequence."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (all linear layers)."})
    steps: int = field(default=10, metadata={"help": "Timed steps."})
    warmup_steps: int = field(default=3, metadata={"help": "Untimed steps first (allocator, kernels, compile)."})
    variants: str = field(default="fast,textbook", metadata={"help": "Comma list of: " + ", ".join(VARIANTS) + ". The first is the headline."})
    checkpoint_layers: int = field(default=-1, metadata={"help": "fast variant: checkpoint this many layers (-1 = all; fewer = faster, more memory)."})
    ce_chunk_tokens: int = field(default=1024, metadata={"help": "Positions per cross-entropy chunk."})
    compile: bool = field(default=False, metadata={"help": "fast variant: torch.compile each decoder layer."})
    seed: int = field(default=0, metadata={"help": "Random weights / tokens seed."})


def build_qlora_model(shape: dict, lora_r: int, attn: str, device):
    """ChatGLM2-shaped GlmForCausalLM with random NF4 linear layers + LoRA, built layer by layer."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GlmConfig, GlmForCausalLM
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding

    config = GlmConfig(**shape, attn_implementation=attn, use_cache=False)
    with torch.device("meta"):
        model = GlmForCausalLM(config).to(torch.bfloat16)
    std = 0.02
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                      compress_statistics=True, quant_type="nf4", device="meta")
                weight = torch.randn(child.out_features, child.in_features, dtype=torch.bfloat16, device=device) * std
                q.weight = bnb.nn.Params4bit(weight.cpu() if device.type == "cpu" else weight, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to(device)  # .to() quantises
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(torch.zeros(child.out_features, dtype=torch.bfloat16, device=device), requires_grad=False)
                setattr(parent, name, q)
                del weight
    # Everything else (embeddings, norms, LM head) stays bf16, frozen, randomly initialised.
    for module in [model.model.embed_tokens, model.lm_head, model.model.norm] + [m for l in model.model.layers for m in l.modules()
                                                                               if "RMSNorm" in type(m).__name__]:
        for pname, p in list(module.named_parameters(recurse=False)):
            data = torch.ones_like(p, device=device) if "norm" in type(module).__name__.lower() else torch.randn_like(p, device=device) * std
            setattr(module, pname, torch.nn.Parameter(data, requires_grad=False))
    model.model.rotary_emb = GlmRotaryEmbedding(config).to(device)  # its inv_freq buffer was built on meta
    model.is_loaded_in_4bit = True
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LoRA weights in fp32, as in QLoRA
    return peft_model


def run_variant(name: str, args, shape, device) -> dict:
    import torch

    from imdb_llm.llm.sft.loss import chunked_lm_loss

    opts = VARIANTS[name]
    torch.manual_seed(args.seed)
    model = build_qlora_model(shape, args.lora_r, opts["attn"], device)
    glm = model.get_base_model()
    glm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = glm.model.layers
    n_ckpt = len(layers) if opts["all_layers_checkpointed"] or args.checkpoint_layers < 0 else min(args.checkpoint_layers, len(layers))
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i < n_ckpt  # selective checkpointing: only the first n_ckpt layers
    if name == "fast" and args.compile:
        for layer in layers:
            layer.compile()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        import bitsandbytes as bnb

        opt = bnb.optim.PagedAdamW8bit(trainable, lr=1e-4)
    else:  # paged optimizers page GPU memory; on CPU plain AdamW measures the same thing
        opt = torch.optim.AdamW(trainable, lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    ids = torch.randint(0, shape["vocab_size"], (args.batch_size, args.seq_len), generator=g).to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            if opts["chunked_ce"]:
                hidden = glm.model(input_ids=ids).last_hidden_state
                loss = chunked_lm_loss(hidden, glm.lm_head, ids, args.ce_chunk_tokens)
            else:
                loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = args.batch_size * args.seq_len * args.steps
    out = {
        "tokens_per_s": round(tokens / seconds, 1),
        "step_s": round(seconds / args.steps, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.type == "cuda" else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3) if device.type == "cuda" else None,
        "host_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "trainable_params": sum(p.numel() for p in trainable),
        "checkpointed_layers": n_ckpt,
        "final_loss": round(losses[-1], 4),
        **opts,
    }
    print(f"[{name}] {out}", flush=True)
    del model, glm, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


@run_main
def main(argv=None):
    args, result_args, config = parse_args([BenchArguments, ResultArguments], argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise UserError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = TINY if args.tiny else CHATGLM2_6B
    with capture_log(None) as log:
        print(f"device {device}, shape {'tiny' if args.tiny else 'chatglm2-6b'}, batch {args.batch_size} x {args.seq_len}, LoRA r={args.lora_r}")
        per_variant = {v: run_variant(v, args, shape, device) for v in variants}
        head = per_variant[variants[0]]
        metrics = {"tokens_per_s": head["tokens_per_s"], "peak_gib": head["peak_gib"], "variant": variants[0]}
        for v, m in per_variant.items():
            metrics[f"{v}_tokens_per_s"] = m["tokens_per_s"]
            metrics[f"{v}_peak_gib"] = m["peak_gib"]
        print(metrics)
        if result_args.results_name:
            write_result(result_args.results_name, metrics, headline="throughput", config=config, log_text=log.getvalue(), results_dir=result_args.results_dir,
                         extra={"variants": per_variant, "shape": shape, "torch": torch.__version__,
                                "targets": {"tokens_per_s_min": 6500, "peak_gib_max": 10, "textbook_reference": "4332 tok/s at 9.77 GiB"}})
    return metrics


if __name__ == "__main__":
    main()
