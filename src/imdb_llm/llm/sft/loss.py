"""The LM loss without full fp32 logits."""

from __future__ import annotations

from imdb_llm.llm.sft.template import IGNORE_INDEX


def chunked_lm_loss(hidden, lm_head, labels, chunk_tokens: int = 1024):
    """Mean next-token cross-entropy, computed ``chunk_tokens`` positions at a time.

    Each chunk's logits are recomputed in backward (activation checkpointing), so peak memory holds
    one ``chunk x vocab`` block instead of ``batch x seq x vocab`` fp32 logits.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    target = labels[:, 1:].reshape(-1)
    n_valid = (target != IGNORE_INDEX).sum().clamp(min=1)

    def block(h, t):
        return F.cross_entropy(lm_head(h).float(), t, ignore_index=IGNORE_INDEX, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start:start + chunk_tokens], target[start:start + chunk_tokens]
        if (t != IGNORE_INDEX).any():
            total = total + checkpoint(block, h, t, use_reentrant=False)
    return total / n_valid
