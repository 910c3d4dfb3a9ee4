"""What TextCNN and BiLSTM share: a word-embedding table in front, a linear classifier behind."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


def init_embedding_(embedding: nn.Embedding) -> None:
    """N(0, 0.1) vectors, the padding row zero. Shared with the language model (models/lstm_lm.py)."""
    nn.init.normal_(embedding.weight, std=0.1)
    if embedding.padding_idx is not None:
        with torch.no_grad():
            embedding.weight[embedding.padding_idx].zero_()


class EmbeddingClassifierConfig(PretrainedConfig):
    """Fields common to the embedding-based classifiers; subclasses add their encoder's."""

    POOLINGS: tuple[str, ...] = ("max", "max_mean")

    def __init__(
        self,
        vocab_size: int = 30000,
        embedding_dim: int = 300,
        dropout: float = 0.5,
        embedding_dropout: float = 0.0,
        pooling: str = "max",
        pad_token_id: int = 0,
        num_labels: int = 2,
        **kwargs,
    ):
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(self.POOLINGS)}, got {pooling!r}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.embedding_dropout = embedding_dropout
        self.pooling = pooling
        super().__init__(pad_token_id=pad_token_id, num_labels=num_labels, **kwargs)


class EmbeddingClassifier(PreTrainedModel):
    main_input_name = "input_ids"
    # The loss is a plain batch mean: Trainer must not rescale it by token counts across processes.
    accepts_loss_kwargs = False

    def __init__(self, config: EmbeddingClassifierConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            init_embedding_(module)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding_dropout(self.embeddings(input_ids))
