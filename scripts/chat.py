#!/usr/bin/env python
"""Streaming multi-turn chat in the terminal, for any chat model with a chat template.

    python scripts/chat.py --model outputs/chatglm2-6b-native            # converted ChatGLM2-6B
    python scripts/chat.py --model packaged:smollm2                      # SmolLM2-135M-Instruct, offline
    python scripts/chat.py --model outputs/chatglm2-6b-native --load_in_4bit true --adapter outputs/qlora

Type a message and press Enter; ``clear`` forgets the conversation, ``exit`` (or end of input)
quits. The answer streams token by token; the history is re-rendered by the model's chat template
every turn and its oldest rounds are dropped when it would overflow the context window.
"""

import sys
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm import ChatSession, load_causal_lm, load_tokenizer


@dataclass
class ChatArguments:
    model: str = field(default="outputs/chatglm2-6b-native", metadata={"help": "Model folder, hub id, .gguf file or packaged:smollm2."})
    adapter: str = field(default=None, metadata={"help": "A LoRA adapter folder (PEFT) to apply on top of the model."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Quantise to NF4 with bitsandbytes while loading (GPU)."})
    load_in_8bit: bool = field(default=False, metadata={"help": "Quantise to int8 with bitsandbytes while loading (GPU)."})
    dtype: str = field(default="auto", metadata={"help": "auto, float16, bfloat16 or float32."})
    device_map: str = field(default="auto", metadata={"help": "'auto' spreads layers over all visible GPUs (ignored without CUDA)."})
    system: str = field(default=None, metadata={"help": "Optional system message placed before the conversation."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer, in tokens."})
    max_context_tokens: int = field(default=None, metadata={"help": "Context window to fit the history into (default: the model's)."})
    do_sample: bool = field(default=True, metadata={"help": "Sample (true) or decode greedily (false)."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (ChatGLM2's chat default)."})
    top_p: float = field(default=0.8, metadata={"help": "Nucleus sampling mass (ChatGLM2's chat default)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = off; small chat models like 1.1."})


@run_main
def main(argv=None):
    (args, _config) = parse_args([ChatArguments], argv)
    import torch
    from transformers import TextStreamer

    tokenizer = load_tokenizer(args.model)
    # device_map="auto" needs accelerators to spread over; on a CPU-only machine load normally.
    device_map = args.device_map if (torch.cuda.is_available() or args.device_map not in ("auto", "")) else None
    model = load_causal_lm(args.model, adapter=args.adapter, load_in_4bit=args.load_in_4bit,
                           load_in_8bit=args.load_in_8bit, dtype=args.dtype, device_map=device_map).eval()
    sampling = {"temperature": args.temperature, "top_p": args.top_p} if args.do_sample else {"temperature": None, "top_p": None, "top_k": None}
    session = ChatSession(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens,
                          max_context_tokens=args.max_context_tokens, do_sample=args.do_sample,
                          repetition_penalty=args.repetition_penalty, **sampling)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    print(f"model {args.model} ready (context {session.context} tokens). 'clear' resets, 'exit' quits.", flush=True)
    while True:
        print("\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            print()
            break
        query = line.strip()
        if not query:
            continue
        if query in ("exit", "quit"):
            break
        if query == "clear":
            session.clear()
            print("(history cleared)", flush=True)
            continue
        print("bot> ", end="", flush=True)
        dropped = session.dropped_rounds
        try:
            session.reply(query, streamer=streamer)
        except UserError as exc:  # a message longer than the context: say so and keep chatting
            print(f"\n(error: {exc})", flush=True)
            continue
        if session.dropped_rounds > dropped:
            print(f"(dropped {session.dropped_rounds - dropped} oldest round(s) to fit the context)", flush=True)


if __name__ == "__main__":
    main()
