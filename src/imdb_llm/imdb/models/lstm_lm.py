"""Forward + backward LSTM language model whose layers drop into the BiLSTM classifier.

Dai & Le (2015) pretrained an LSTM as a language model on IMDB's own text before training it to
classify (their SA-LSTM), and ELMo (Peters et al. 2018) trained a forward and a backward LM side by
side. This is the smallest version of both: one embedding table shared by the two directions,
``forward_lstms[0]`` predicting the next token, ``backward_lstms[0]`` (reading the block reversed)
predicting the previous one, and one shared softmax. The parameter names are the classifier's
(models/lstm.py), so ``BiLSTMForSequenceClassification`` loads the embeddings and both LSTMs as
they are (``load_lm_into_classifier``) and only its linear layer starts from scratch.

The output layer is ``nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al. 2017): a full softmax over a
30k vocabulary is ~7x the multiply-adds of both LSTMs per token, and even the adaptive one takes
most of a training step on a CPU (profiled: the LSTMs are under a fifth). Adaptive softmax needs frequent tokens
first, so the model keeps a ``frequency_rank`` buffer (token id -> rank in the pretraining text)
and predicts ranks, not ids.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from imdb_llm.cli import UserError
from imdb_llm.imdb.models.base import init_embedding_
from imdb_llm.imdb.models.lstm import init_lstm_, reverse_within_length


class BiLSTMLMConfig(PretrainedConfig):
    model_type = "bilstm_lm"

    def __init__(self, vocab_size: int = 30000, embedding_dim: int = 300, hidden_size: int = 256, dropout: float = 0.1,
                 cutoffs: list[int] | None = None, div_value: float = 4.0, pad_token_id: int = 0, **kwargs):
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.dropout = dropout
        # Rank boundaries of the adaptive softmax's clusters. Those a small vocabulary does not reach
        # are dropped; with none left, one boundary halfway keeps the module valid.
        self.cutoffs = [c for c in (cutoffs or [2000, 10000]) if 0 < c < vocab_size - 1] or [max(1, vocab_size // 2)]
        self.div_value = div_value
        super().__init__(pad_token_id=pad_token_id, **kwargs)


def frequency_ranks(token_counts: np.ndarray) -> np.ndarray:
    """Token id -> its rank by count (0 = most frequent; ties broken by id, so it is deterministic)."""
    order = np.lexsort((np.arange(len(token_counts)), -token_counts))
    ranks = np.empty_like(order)
    ranks[order] = np.arange(len(order))
    return ranks


class BiLSTMLanguageModel(PreTrainedModel):
    config_class = BiLSTMLMConfig
    base_model_prefix = "bilstm_lm"
    main_input_name = "input_ids"
    accepts_loss_kwargs = False

    def __init__(self, config: BiLSTMLMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.forward_lstms = nn.ModuleList([nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)])
        self.backward_lstms = nn.ModuleList([nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)])
        self.dropout = nn.Dropout(config.dropout)
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(config.hidden_size, config.vocab_size, cutoffs=config.cutoffs, div_value=config.div_value)
        self.register_buffer("frequency_rank", torch.arange(config.vocab_size), persistent=True)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def _init_weights(self, module):
        # As the classifier initialises the same layers.
        if isinstance(module, nn.Embedding):
            init_embedding_(module)
        elif isinstance(module, nn.LSTM):
            init_lstm_(module)

    def set_frequency_ranks(self, ranks: np.ndarray) -> None:
        if ranks.shape != (self.config.vocab_size,) or sorted(ranks.tolist()) != list(range(self.config.vocab_size)):
            raise ValueError("frequency ranks must be a permutation of the vocabulary ids")
        self.frequency_rank.copy_(torch.as_tensor(ranks, dtype=torch.long))

    def forward(self, input_ids=None, labels=None, return_dict=None, **kwargs):
        """``input_ids`` (batch, time) blocks without padding (imdb_llm.imdb.scratch.pack_dataset); ``labels``,
        when given, are the same ids (as for HF causal LMs: the model does the shifting). Loss: mean of the forward LM's and the backward LM's per-token negative log-likelihood."""
        x = self.dropout(self.embeddings(input_ids))
        targets = self.frequency_rank[input_ids if labels is None else labels]
        forward_states, _ = self.forward_lstms[0](x)
        backward_states, _ = self.backward_lstms[0](x.flip(1))
        hidden = self.config.hidden_size
        # forward state at t predicts token t+1; backward state at (reversed) t predicts the token before it
        states = torch.cat([forward_states[:, :-1].reshape(-1, hidden), backward_states[:, :-1].reshape(-1, hidden)])
        wanted = torch.cat([targets[:, 1:].reshape(-1), targets.flip(1)[:, 1:].reshape(-1)])
        # adaptive softmax mixes dtypes under autocast (index_copy_ of bf16 into fp32): keep it in fp32
        with torch.autocast(device_type=states.device.type, enabled=False):
            loss = self.softmax(self.dropout(states).float(), wanted).loss
        return CausalLMOutput(loss=loss)

    @torch.no_grad()
    def sequence_log_likelihoods(self, sequences: list[list[int]]) -> torch.Tensor:
        """Log-probability of each whole sequence, once as the forward LM reads it and once as the
        backward LM does: a ``(len(sequences), 2)`` float64 tensor.

        The forward LM scores every token after the first given the ones before it; the backward LM
        every token before the last given the ones after. A review wrapped as ``[CLS] text [SEP]``
        (as in pretraining) thus gets log p(text [SEP] | [CLS]) and log p([CLS] text | [SEP]): two
        estimates of the same log p(text). Sequences are right-padded per batch; each direction reads
        its own copy (the backward one reversed before padding), so padding never precedes a real
        token and no sequence's score depends on its batch-mates. Call ``eval()`` first."""
        device = self.embeddings.weight.device
        lengths = torch.tensor([len(s) for s in sequences], device=device)
        if (lengths < 2).any():
            raise ValueError("every sequence needs at least two tokens (one to read, one to predict)")
        padded = nn.utils.rnn.pad_sequence([torch.as_tensor(s, device=device) for s in sequences], batch_first=True, padding_value=self.config.pad_token_id)
        predicts = torch.arange(1, padded.size(1), device=device) < lengths[:, None]  # position t+1 is a real token
        totals = []
        for lstm, ids in ((self.forward_lstms[0], padded), (self.backward_lstms[0], reverse_within_length(padded, lengths))):
            states, _ = lstm(self.embeddings(ids))
            targets = self.frequency_rank[ids[:, 1:]]
            with torch.autocast(device_type=device.type, enabled=False):
                token_logp = self.softmax(states[:, :-1].reshape(-1, self.config.hidden_size).float(), targets.reshape(-1)).output
            totals.append((token_logp.view(len(sequences), -1).double() * predicts).sum(1))
        return torch.stack(totals, dim=1)


# Parameters the classifier takes from the LM: everything but the output layer and the rank table.
TRANSFERRED_PREFIXES = ("embeddings.", "forward_lstms.0.", "backward_lstms.0.")


def load_language_model(lm_dir: str) -> BiLSTMLanguageModel:
    """The LM saved by make imdb-lstm-lm; a missing or foreign folder is a one-line ``--init_from_lm`` error."""
    if not os.path.isdir(lm_dir):
        raise UserError(f"--init_from_lm {lm_dir}: not a folder (run make imdb-lstm-lm first)")
    try:
        return BiLSTMLanguageModel.from_pretrained(lm_dir)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"--init_from_lm {lm_dir}: cannot load a bilstm_lm model ({str(error).splitlines()[0]})") from None


def load_lm_into_classifier(classifier: nn.Module, lm_dir: str) -> int:
    """Copy the LM's embeddings and first-layer LSTMs into a BiLSTM classifier; returns tensors copied.

    Shapes must match (same tokenizer, embedding_dim, hidden_size); anything else is a one-line error.
    """
    lm = load_language_model(lm_dir)
    source = {k: v for k, v in lm.state_dict().items() if k.startswith(TRANSFERRED_PREFIXES)}
    target = classifier.state_dict()
    for name, tensor in source.items():
        if name not in target or target[name].shape != tensor.shape:
            have = tuple(target[name].shape) if name in target else "missing"
            raise UserError(f"--init_from_lm {lm_dir}: {name} is {tuple(tensor.shape)} in the LM but {have} in the classifier "
                            "(tokenizer, embedding_dim and hidden_size must match)")
    classifier.load_state_dict(source, strict=False)
    return len(source)
