"""Tiny random models for CPU tests and dry runs (test-only factories)."""

from __future__ import annotations

import os
from typing import Sequence

from imdb_llm.llm.sft.template import CHATGLM2_CHAT_TEMPLATE


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
    tok.chat_template = CHATGLM2_CHAT_TEMPLATE
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
