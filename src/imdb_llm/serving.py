"""An OpenAI-compatible chat server for any causal LM with a chat template (ChatGLM2 included).

The server is these layers, each in its own module:

* :mod:`imdb_llm.serving_api` - HTTP: OpenAI's wire format, validation, SSE, auth, limits
  (``create_app(model, tokenizer, ...)`` builds the FastAPI app).
* :mod:`imdb_llm.serving_engine` - scheduling: the waiting queue, admission limits and the worker
  thread that runs continuous batching (``GenerationEngine``, ``Job``).
* :mod:`imdb_llm.serving_batch` - the batch itself: one left-padded KV cache that rows join and
  leave between decode steps (``PaddedBatch``).
* :mod:`imdb_llm.serving_decode` - per row: the next token (sampling, and the repetition controls
  of :mod:`imdb_llm.sft.decoding`, as ``generate`` applies them in eval and chat) and the text
  stream. What a request leaves out comes from the model's generation defaults.

This module re-exports the public names and holds two helpers: :func:`serve_in_thread` (uvicorn in
a background thread, for tests and scripts) and :func:`make_tiny_chat_model` (a tiny random chat
model). ``scripts/serve.py`` is the CLI; docs/serving.md explains the design and the numbers.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .serving_api import APIError, ChatCompletionRequest, context_length_of, create_app  # noqa: F401  (re-exported)
from .serving_batch import PaddedBatch  # noqa: F401
from .serving_engine import GenerationEngine, Job, Overloaded, TextStream  # noqa: F401

__all__ = ["APIError", "ChatCompletionRequest", "GenerationEngine", "Job", "Overloaded", "PaddedBatch", "TextStream",
           "context_length_of", "create_app", "make_tiny_chat_model", "serve_in_thread"]


# --------------------------------------------------------------------------------------------
# Running the app in a background thread (tests, the screenshot script)
# --------------------------------------------------------------------------------------------
@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start uvicorn on ``host:port`` (0 = any free port) in a thread; yield the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(15)


# --------------------------------------------------------------------------------------------
# A tiny random chat model, for tests and offline demos (answers are gibberish, shapes are real)
# --------------------------------------------------------------------------------------------
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_chat_model(out_dir: str | Path, *, seed: int = 0, context_length: int = 256) -> Path:
    """Save a tiny random ``LlamaForCausalLM`` + byte-level BPE tokenizer with a ChatML template.

    Everything is built locally (no hub): the tokenizer is trained on a few sentences.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "This movie was great, I loved the acting and the story.",
        "A terrible film: boring plot, bad dialogue, and far too long.",
        "user assistant system: hello, how are you? I am fine, thank you.",
        "The quick brown fox jumps over the lazy dog. 0123456789",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    tok.model_max_length = context_length
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger random logits: a varied (not constant) greedy answer
        model.lm_head.weight.normal_(0.0, 1.0)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    return out
