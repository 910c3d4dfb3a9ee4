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
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BiLSTMConfig(PretrainedConfig):
    model_type = "bilstm"

    def __init__(
        self,
        vocab_size: int = 30000,
        embedding_dim: int = 300,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.5,
        embedding_dropout: float = 0.0,
        pooling: str = "max",
        pad_token_id: int = 0,
        num_labels: int = 2,
        **kwargs,
    ):
        if pooling not in ("max", "last", "max_mean"):
            raise ValueError(f"pooling must be 'max', 'last' or 'max_mean', got {pooling!r}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.embedding_dropout = embedding_dropout
        self.pooling = pooling
        super().__init__(pad_token_id=pad_token_id, num_labels=num_labels, **kwargs)


class BiLSTMForSequenceClassification(PreTrainedModel):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        features = 2 * config.hidden_size * (2 if config.pooling == "max_mean" else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(features, config.num_labels)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
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
        x = self.embedding_dropout(self.embeddings(input_ids))
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
