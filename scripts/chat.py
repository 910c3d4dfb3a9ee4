#!/usr/bin/env python
"""Streaming multi-turn chat in the terminal, for any chat model with a chat template.

    python scripts/chat.py --model outputs/chatglm2-6b-native            # converted ChatGLM2-6B
    python scripts/chat.py --model packaged:smollm2                      # SmolLM2-135M-Instruct, offline
    python scripts/chat.py --model outputs/chatglm2-6b-native --load_in_4bit true --adapter outputs/qlora

Type a message and press Enter; ``clear`` forgets the conversation, ``exit`` (or end of input)
quits. The answer streams token by token; the history is re-rendered by the model's chat template
every turn and its oldest rounds are dropped when it would overflow the context window.

Decoding follows the model's generation defaults (:mod:`imdb_llm.llm.generation`: an adapter's
``generation_defaults.json`` from sft_qlora.py, else the model's own, e.g. ChatGLM2's sampling at
temperature 0.8, top_p 0.8), the same ones the evaluation and the server use; ``--do_sample``,
``--temperature``, ``--top_p``, ``--repetition_penalty``, ``--no_repeat_ngram_size`` and
``--max_new_tokens`` override them.
"""

import sys
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.llm.chat import ChatSession
from imdb_llm.llm.med.guard import MedicalGuard
from imdb_llm.llm.loading import QUANTIZE_CHOICES, QUANTIZE_HELP, load_chat_tokenizer, load_for_decoding
from imdb_llm.llm.generation import GenerationOverrides


@dataclass
class ChatArguments:
    """The model to chat with and how it is loaded (decoding flags: GenerationOverrides)."""

    model_name_or_path: str = field(default="outputs/chatglm2-6b-native", metadata={"aliases": ["--model"], "help": "Model folder, hub id, .gguf file or packaged:smollm2."})
    adapter: str = field(default=None, metadata={"help": "A LoRA adapter folder (PEFT) to apply on top of the model."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Quantise to NF4 with bitsandbytes while loading (GPU)."})
    load_in_8bit: bool = field(default=False, metadata={"help": "Quantise to int8 with bitsandbytes while loading (GPU)."})
    dtype: str = field(default="auto", metadata={"help": "auto, float16, bfloat16 or float32."})
    quantize: str = field(default="auto", metadata={"help": QUANTIZE_HELP})
    device_map: str = field(default="auto", metadata={"help": "'auto' spreads layers over all visible GPUs (ignored without CUDA)."})
    system: str = field(default=None, metadata={"help": "Optional system message placed before the conversation."})
    max_context_tokens: int = field(default=None, metadata={"help": "Context window to fit the history into (default: the model's)."})
    retrieval_k: int = field(default=None, metadata={"help": "Training records retrieved for each question; default: the model folder's "
                                                             "setting (a medical assistant's retrieval_index.jsonl); 0 = off."})
    rules: bool = field(default=None, metadata={"help": "The medical safety rules around each answer; default: on for a medical assistant."})

    def __post_init__(self):
        if self.quantize not in QUANTIZE_CHOICES:
            raise UserError(f"--quantize {self.quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")


@run_main
def main(argv=None):
    (args, overrides, _config) = parse_args([ChatArguments, GenerationOverrides], argv)
    import torch
    from transformers import TextStreamer

    settings = overrides.resolve(args.model_name_or_path, args.adapter)
    folder = args.adapter or args.model_name_or_path
    tokenizer = load_chat_tokenizer(args.model_name_or_path, args.adapter)
    guard = MedicalGuard.from_folder(folder, args.retrieval_k, args.rules)
    # device_map="auto" needs accelerators to spread over; on a CPU-only machine load normally.
    device_map = args.device_map if (torch.cuda.is_available() or args.device_map not in ("auto", "")) else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, weights = load_for_decoding(args.model_name_or_path, device=device, quantize=args.quantize, adapter=args.adapter, dtype=args.dtype,
                                       load_in_4bit=args.load_in_4bit, load_in_8bit=args.load_in_8bit, device_map=device_map)
    session = ChatSession(model, tokenizer, system=args.system, max_context_tokens=args.max_context_tokens, settings=settings, guard=guard)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    print(f"model {args.model_name_or_path} ready (context {session.context} tokens; {weights}; decoding {settings.spec()}, from {settings.source}). "
          f"{guard.describe() + '. ' if guard else ''}'clear' resets, 'exit' quits.", flush=True)
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
        # The safety rules may put a notice first or take a sentence out: such an answer is shown whole, once checked.
        guarded = guard is not None and guard.decision(query).changes_answer
        try:
            answer = session.reply(query, streamer=None if guarded else streamer)
        except UserError as exc:  # a message longer than the context: say so and keep chatting
            print(f"\n(error: {exc})", flush=True)
            continue
        if guarded:
            print(answer, flush=True)
        if session.dropped_rounds > dropped:
            print(f"(dropped {session.dropped_rounds - dropped} oldest round(s) to fit the context)", flush=True)


if __name__ == "__main__":
    main()
