"""Tiny random models for CPU tests (test-only factories; nothing in src/ or scripts/ imports them)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from imdb_llm.llm.prompts import CHATML_TEMPLATE, NAMED_TEMPLATES

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "chatglm2"


def make_tiny_glm(out_dir: str | os.PathLike, texts: Sequence[str], vocab_size: int = 600, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> str:
    """A tiny random ChatGLM2-shaped ``GlmForCausalLM`` + byte-level BPE tokenizer (trained on
    ``texts``) with the ChatGLM2 chat template, saved to ``out_dir``: for CPU tests and dry runs.

    Same architecture family as the native ChatGLM2 conversion: grouped-query attention, half the
    head dimension rotated (``partial_rotary_factor=0.5``), fused gate/up MLP, RMSNorm.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(list(texts), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = NAMED_TEMPLATES["chatglm2"]
    config = GlmConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4, partial_rotary_factor=0.5,
                       max_position_embeddings=1024, rms_norm_eps=1e-5, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    GlmForCausalLM(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)


def make_tiny_lstm_lm(vocab_size: int = 40, embedding_dim: int = 8, hidden_size: int = 16, seed: int = 0):
    """A tiny random forward + backward LSTM LM in eval mode, with a random frequency-rank order.
    Hidden 16: the adaptive softmax tails project to 16 // 4 and 16 // 16 dimensions."""
    import numpy as np
    import torch

    from imdb_llm.imdb.models.lstm_lm import BiLSTMLanguageModel, BiLSTMLMConfig

    torch.manual_seed(seed)
    lm = BiLSTMLanguageModel(BiLSTMLMConfig(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size, dropout=0.0, cutoffs=[10, 20]))
    lm.set_frequency_ranks(np.random.default_rng(seed).permutation(vocab_size))
    return lm.eval()


def build_prompt(query: str, history: list[tuple[str, str]] | None = None) -> str:
    """The official ``ChatGLMTokenizer.build_prompt`` (without the ``[gMASK]sop`` prefix)."""
    prompt = ""
    for i, (old_query, response) in enumerate(history or []):
        prompt += f"[Round {i + 1}]\n\n问：{old_query}\n\n答：{response}\n\n"
    return prompt + f"[Round {len(history or []) + 1}]\n\n问：{query}\n\n答："


def make_tiny_chatglm2(out_dir: str | os.PathLike, *, full_vocab: bool = True, fixture_dir: str | os.PathLike | None = None) -> Path:
    """A tiny ChatGLM2 in native format, with the real fast tokenizer and chat template.

    Converts ``tests/fixtures/chatglm2/tiny-official`` (2 layers, hidden 64). With ``full_vocab``
    (the default) its 1,000-row embedding/output are padded to 65,024 rows (small random rows,
    seed 0) so the real tokenizer's ids fit; rows below 1,000 are the fixture's, unchanged.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from imdb_llm.llm.chatglm2.convert import convert_checkpoint

    fixture = Path(fixture_dir) if fixture_dir else FIXTURE_DIR
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        official = json.loads((fixture / "tiny-official" / "config.json").read_text())
        weights = load_file(str(fixture / "tiny-official" / "model.safetensors"))
        if full_vocab:
            gen = torch.Generator().manual_seed(0)
            old = official["padded_vocab_size"]
            official["padded_vocab_size"] = 65024
            for name in ("transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"):
                w = weights[name]
                extra = torch.randn(65024 - old, w.shape[1], generator=gen, dtype=w.dtype) * 0.02
                weights[name] = torch.cat([w, extra])
        (staging / "config.json").write_text(json.dumps(official))
        save_file(weights, str(staging / "model.safetensors"))
        shutil.copy(fixture / "tokenizer.model", staging / "tokenizer.model")
        return convert_checkpoint(staging, out, dtype="float32", overwrite=True, log=lambda *_: None)


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
