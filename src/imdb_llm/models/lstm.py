"""Bidirectional LSTM classifier.

Embeddings -> stacked BiLSTM over the packed (unpadded) sequence -> max-pool over time of the
concatenated forward/backward states -> dropout -> linear. Max-pooling the outputs uses evidence
from the whole review instead of relying on the last hidden state to remember it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers.modeling_outputs import SequenceClassifierOutput

from .base import EmbeddingClassifier, EmbeddingClassifierConfig


class BiLSTMConfig(EmbeddingClassifierConfig):
    model_type = "bilstm"
    POOLINGS = ("max", "max_mean", "last")

    def __init__(self, hidden_size: int = 256, num_layers: int = 2, **kwargs):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        super().__init__(**kwargs)


class BiLSTMForSequenceClassification(EmbeddingClassifier):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        features = 2 * config.hidden_size * (2 if config.pooling == "max_mean" else 1)
        self.classifier = nn.Linear(features, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if "weight_hh" in name:
                    nn.init.orthogonal_(param)
                elif "weight_ih" in name:
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)
                    # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early on.
                    n = param.size(0) // 4
                    param.data[n : 2 * n].fill_(1.0)

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        lengths = attention_mask.sum(1).clamp(min=1)
        x = self.embed(input_ids)
        # Packing skips the (right) padding, so the backward direction starts at each review's
        # real last token instead of reading a run of [PAD]s first.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.size(1))
        valid = (torch.arange(out.size(1), device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        if self.config.pooling == "last":
            pooled = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            pooled = out.masked_fill(~valid, float("-inf")).amax(dim=1)
            if self.config.pooling == "max_mean":
                pooled = torch.cat([pooled, (out * valid).sum(1) / lengths[:, None]], dim=1)
        logits = self.classifier(self.dropout(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
