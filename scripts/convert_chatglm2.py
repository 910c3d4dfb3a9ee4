#!/usr/bin/env python
"""Convert an official ChatGLM2-6B checkpoint into a transformers-native ``GlmForCausalLM`` folder.

    python scripts/convert_chatglm2.py --input THUDM/chatglm2-6b --output outputs/chatglm2-6b-native
    python scripts/convert_chatglm2.py --input /path/to/chatglm2-6b --output out --dtype bfloat16

The result loads with ``GlmForCausalLM.from_pretrained(out)`` and ``AutoTokenizer.from_pretrained(out)``
on any transformers 5.x, without ``trust_remote_code``. The weight mapping is documented in
``src/imdb_llm/chatglm2.py`` and docs/chatglm2.md.
"""

from dataclasses import dataclass, field

from imdb_llm.cli import parse_args, run_main
from imdb_llm.llm.chatglm2.convert import MAX_SHARD_BYTES, convert_checkpoint


@dataclass
class ConvertArguments:
    input: str = field(metadata={"help": "Official checkpoint folder (config.json + weights [+ tokenizer.model]) or a hub id such as THUDM/chatglm2-6b (needs network)."})
    output: str = field(metadata={"help": "Folder to write the native model, tokenizer and generation config into."})
    dtype: str = field(default="auto", metadata={"help": "auto (keep the checkpoint's), float16, bfloat16 or float32."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder."})
    max_shard_gb: float = field(default=MAX_SHARD_BYTES / 1024**3, metadata={"help": "Largest output shard, in GiB (bounds memory too)."})


@run_main
def main(argv=None):
    (args, _config) = parse_args([ConvertArguments], argv)
    # One shard in, one shard out: memory stays around (largest input shard + max_shard_gb).
    convert_checkpoint(args.input, args.output, dtype=args.dtype, overwrite=args.overwrite,
                       max_shard_bytes=int(args.max_shard_gb * 1024**3))


if __name__ == "__main__":
    main()
