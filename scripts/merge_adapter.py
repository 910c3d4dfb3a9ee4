#!/usr/bin/env python
"""Fold a LoRA adapter into the base weights: W' = W + (alpha / r) * B @ A.

The result is an ordinary model folder (safetensors + tokenizer with its chat template) that
chat and serve load like any other model, with no peft at inference time. The base is loaded in
bf16/fp16 (not 4-bit): merging into NF4 weights would round the update away. An adapter trained
on the 4-bit base therefore sees slightly different base weights after the merge (the QLoRA
paper's caveat); the difference is the NF4 rounding error, not a bug.

    python scripts/merge_adapter.py --model_name_or_path outputs/chatglm2-6b --adapter outputs/chatglm2-6b-qlora-med \
        --output_dir outputs/chatglm2-6b-med-merged
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path


from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.results import atomic_folder


@dataclass
class MergeArguments:
    model_name_or_path: str = field(default="packaged:smollm2", metadata={"help": "The base model the adapter was trained on."})
    adapter: str = field(default="outputs/smollm2-qlora-med", metadata={"help": "LoRA adapter folder."})
    output_dir: str = field(default="outputs/smollm2-med-merged", metadata={"help": "Where the merged model goes."})
    dtype: str = field(default="bfloat16", metadata={"help": "bfloat16, float16 or float32 weights for the merged model."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


@run_main
def main(argv=None):
    (args, _config) = parse_args([MergeArguments], argv)
    from imdb_llm.llm.loading import load_causal_lm, load_tokenizer
    from imdb_llm.llm.generation import DEFAULTS_FILE

    if args.dtype not in ("bfloat16", "float16", "float32"):
        raise UserError(f"--dtype {args.dtype}: use bfloat16, float16 or float32")
    if not (Path(args.adapter) / "adapter_config.json").is_file():
        raise UserError(f"{args.adapter}: not a LoRA adapter folder (no adapter_config.json)")
    out = Path(args.output_dir)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite true to replace it")

    model = load_causal_lm(args.model_name_or_path, adapter=args.adapter, dtype=args.dtype)
    merged = model.merge_and_unload()
    # The adapter folder carries the tokenizer (and chat template) used in training.
    tok_source = args.adapter if (Path(args.adapter) / "tokenizer_config.json").is_file() else args.model_name_or_path
    tokenizer = load_tokenizer(tok_source)

    config = merged.config
    if hasattr(config, "quantization_config"):  # a GGUF base is flagged as quantized; the merged weights are plain
        del config.quantization_config
    merged.hf_quantizer = None
    with atomic_folder(out) as tmp:  # a crash never leaves a half-written model
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # The decoding the adapter was judged with stays the merged model's default in chat and serve.
        defaults = Path(args.adapter) / DEFAULTS_FILE
        if defaults.is_file():
            shutil.copy2(defaults, tmp / DEFAULTS_FILE)
    print(f"merged {args.adapter} into {args.model_name_or_path} -> {out} ({args.dtype})")
    return str(out)


if __name__ == "__main__":
    main()
