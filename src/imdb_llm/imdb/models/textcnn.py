"""TextCNN (Kim 2014, "Convolutional Neural Networks for Sentence Classification", arXiv:1408.5882).

Embeddings -> parallel 1-D convolutions of several widths (n-gram detectors) -> ReLU -> max over
time (the strongest match of each detector anywhere in the review) -> dropout -> linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from imdb_llm.imdb.models.base import EmbeddingClassifier, EmbeddingClassifierConfig


class TextCNNConfig(EmbeddingClassifierConfig):
    model_type = "textcnn"

    def __init__(self, kernel_sizes: tuple[int, ...] | list[int] = (3, 4, 5), num_filters: int = 100, **kwargs):
        self.kernel_sizes = list(kernel_sizes)
        self.num_filters = num_filters
        super().__init__(**kwargs)


class TextCNNForSequenceClassification(EmbeddingClassifier):
    config_class = TextCNNConfig
    base_model_prefix = "textcnn"

    def __init__(self, config: TextCNNConfig):
        super().__init__(config)
        self.convs = nn.ModuleList(nn.Conv1d(config.embedding_dim, config.num_filters, k) for k in config.kernel_sizes)
        features = config.num_filters * len(config.kernel_sizes) * (2 if config.pooling == "max_mean" else 1)
        self.classifier = nn.Linear(features, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        # Reviews shorter than the widest kernel still need one window: pad on the right.
        shortfall = max(self.config.kernel_sizes) - input_ids.size(1)
        if shortfall > 0:
            input_ids = F.pad(input_ids, (0, shortfall), value=self.config.pad_token_id)
            attention_mask = F.pad(attention_mask, (0, shortfall), value=0)
        x = self.embed(input_ids).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv, k in zip(self.convs, self.config.kernel_sizes):
            h = F.relu(conv(x))  # (B, F, T-k+1)
            # Window t covers tokens t..t+k-1: it is real if its last token is (right padding), so
            # padding never wins the max. The first window always counts, for reviews shorter than k.
            valid = attention_mask[:, k - 1 : k - 1 + h.size(2)].bool()
            valid[:, 0] = True
            valid = valid.unsqueeze(1)
            pooled.append(h.masked_fill(~valid, float("-inf")).amax(dim=2))
            if self.config.pooling == "max_mean":
                pooled.append((h * valid).sum(2) / valid.sum(2).clamp(min=1))
        logits = self.classifier(self.dropout(torch.cat(pooled, dim=1)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
